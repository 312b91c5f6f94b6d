// Runs before the library so that any error, including one inside it, is recorded in the DOM.
window.onerror = function (message, source, line) {
  document.documentElement.setAttribute("data-error", String(message) + " @" + line);
};
window.addEventListener("unhandledrejection", function (event) {
  document.documentElement.setAttribute("data-error", "unhandled rejection: " + event.reason);
});
