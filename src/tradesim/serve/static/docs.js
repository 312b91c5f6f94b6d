// /docs (tradesim serve --docs): Swagger UI over /openapi.json, all from this server (no CDN, no
// inline script). The browser's session cookie authenticates the schema fetch and "Try it out".
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,   // the default would send the schema to validator.swagger.io
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  onComplete: () => { document.body.dataset.ready = "docs"; },
});
