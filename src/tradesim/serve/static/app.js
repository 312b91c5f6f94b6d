// tradesim dashboard: plain ES module, no build step (docs/serve.md). Every text from the server
// goes into the page through textContent (never innerHTML); the CSP forbids inline script.

const main = document.getElementById("main");
const conn = document.getElementById("conn");
const state = { scope: null, strategies: null, symbols: null, lastSeq: 0, listeners: new Set(), ws: null,
                retry: 0, timers: [], page: null };

// -- helpers -------------------------------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

// replaceChildren() would insert null as the text "null": drop empty slots first.
function fill(el, ...kids) { el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false)); }

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status; this.code = e.code; this.field = e.field; this.errors = e.errors || [];
  }
}

async function api(path, opts = {}) {
  const init = { method: opts.method || "GET", credentials: "same-origin", headers: {} };
  if (opts.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

// Grouped fixed-point numbers ("1,234.56", as toLocaleString("en") writes them); toLocaleString
// with options builds an Intl.NumberFormat per call, which a 200-row table and its chart markers felt.
const fmt = (x, d = 2) => {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  const v = Number(x);
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "-∞";
  const s = Math.abs(v).toFixed(d);
  const dot = s.indexOf(".");
  const whole = dot < 0 ? s : s.slice(0, dot);
  const grouped = whole.length > 3 ? whole.replace(/\B(?=(\d{3})+$)/g, ",") : whole;
  return (v < 0 || Object.is(v, -0) ? "-" : "") + grouped + (dot < 0 ? "" : s.slice(dot));
};
const signed = (x) => {
  const v = Math.abs(x) < 0.005 ? 0 : x;   // no "-0.00"
  return h("span", { class: v > 0 ? "pos" : v < 0 ? "neg" : "" }, v > 0 ? "+" + fmt(v) : fmt(v));
};
const pct = (x) => (x === null || x === undefined) ? "—" : (100 * x).toFixed(1) + " %";
const utc = (ms) => ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "—";
function age(ms) {
  if (!ms) return "—";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 60 ? s.toFixed(0) + " s" : s < 3600 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h";
}
function every(ms, fn) { const t = setInterval(fn, ms); state.timers.push(t); return t; }
function notice(text) { return h("p", { class: "notice", role: "alert" }, text); }

// -- live events ----------------------------------------------------------------------------------

function setConn(s, text) { conn.dataset.state = s; conn.textContent = text; }

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const q = state.lastSeq ? `?from_seq=${state.lastSeq + 1}` : "";
  const ws = new WebSocket(`${proto}://${location.host}/api/events${q}`);
  state.ws = ws;
  ws.onopen = () => { state.retry = 0; setConn("live", "live"); };
  ws.onmessage = (msg) => {
    let batch;
    try { batch = JSON.parse(msg.data); } catch (_) { return; }
    for (const ev of batch) {
      if (ev.type === "hello") {
        if (!state.lastSeq || ev.from_seq_ignored) state.lastSeq = ev.seq;   // (a restarted server)
        if (ev.gap_from) setConn("live", "live (missed some events)");
        continue;
      }
      if (ev.type === "subscriber_dropped") { setConn("dropped", "too slow: dropped"); continue; }
      if (ev.seq) state.lastSeq = Math.max(state.lastSeq, ev.seq);
      for (const fn of state.listeners) { try { fn(ev); } catch (err) { console.warn(err); } }
    }
  };
  ws.onclose = () => {
    state.ws = null;
    state.retry = Math.min(state.retry + 1, 6);
    const wait = 500 * state.retry;
    setConn("reconnecting", `reconnecting (${(wait / 1000).toFixed(1)} s)…`);
    setTimeout(connect, wait);
  };
}

function listen(fn) { state.listeners.add(fn); return () => state.listeners.delete(fn); }

// -- pages ------------------------------------------------------------------------------------------

function leave() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  state.listeners.clear();
  if (state.page && state.page.dispose) state.page.dispose();
  state.page = null;
}

async function route() {
  leave();
  const hash = location.hash || "#/";
  fill(main, h("p", { class: "muted" }, "Loading…"));
  try {
    if (hash.startsWith("#/runner/")) await runnerPage(decodeURIComponent(hash.slice(9)));
    else if (hash.startsWith("#/sessions/")) await sessionPage(decodeURIComponent(hash.slice(11)));
    else if (hash.startsWith("#/sessions")) await sessionsPage();
    else await overview();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { loginPage(); return; }
    fill(main, notice(`Error: ${err.message}`));
  }
}

function loginPage() {
  const input = h("input", { type: "password", id: "token", autocomplete: "off", placeholder: "token" });
  const err = h("div", { class: "err", id: "login-error" });
  const form = h("form", { class: "login", id: "login" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Open the one-time link tradesim serve printed, or paste the control or view token."),
    input, err, h("button", { class: "primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/login", { method: "POST", body: { token: input.value.trim() } });
      await boot();
    } catch (ex) { err.textContent = ex.message; }
  });
  fill(main, form);
  setConn("offline", "signed out");
}

// -- overview ------------------------------------------------------------------------------------

async function overview() {
  const summaryEl = h("div", { class: "cards", id: "summary" });
  const tbody = h("tbody", { id: "runner-rows" });
  const table = h("div", { class: "scroll" }, h("table", { id: "runners" },
    h("thead", {}, h("tr", {}, ...["Runner", "Status", "State", "Position", "Unrealised", "Realised", "Trades",
      "Win rate", "Last bar", "Errors", ""].map((t, i) => h("th", { class: i >= 4 && i <= 9 ? "num" : "" }, t)))),
    tbody));
  const formWrap = h("div", { id: "add-runner-wrap" });
  fill(main, h("h1", {}, "Engine"), summaryEl, h("h2", {}, "Runners"), table,
    state.scope === "control" ? h("h2", {}, "Add a runner") : null, formWrap);

  async function refresh() {
    const [summary, runners] = await Promise.all([api("/api/engine/summary"), api("/api/runners")]);
    renderSummary(summaryEl, summary);
    fill(tbody, ...runners.map(runnerRow));
    main.dataset.runners = String(runners.length);
    document.body.dataset.ready = "overview";
    if (!performance.getEntriesByName("runners-rendered").length) performance.mark("runners-rendered");
  }
  await refresh();
  if (state.scope === "control") await addRunnerForm(formWrap, refresh);
  let pending = null;
  listen((ev) => {
    if (["control", "runner_status", "position_opened", "position_closed", "runner_error"].includes(ev.type)
        && !pending) pending = setTimeout(() => { pending = null; refresh().catch(() => {}); }, 250);
  });
  every(2000, () => refresh().catch(() => {}));
}

function renderSummary(el, s) {
  const card = (label, value, id) => h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value", id }, value));
  const byStatus = Object.entries(s.by_status).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(", ");
  const feeds = Object.entries(s.feeds).map(([n, f]) => {
    const st = f.stats || {};
    const extra = [st.gaps ? `${st.gaps} gaps` : "", st.backfilled ? `${st.backfilled} backfilled` : ""]
      .filter(Boolean).join(", ");
    return `${n}: ${f.status}, ${f.bars.toLocaleString("en")} bars${extra ? ", " + extra : ""}`;
  }).join("; ");
  const t = s.totals;
  fill(el, 
    card("Runners", `${s.runners}` + (byStatus ? ` (${byStatus})` : ""), "sum-runners"),
    card("Symbols", s.symbols.join(", ") || "—"),
    card("Feeds", feeds || "—", "sum-feeds"),
    card("Equity", fmt(t.equity)), card("Unrealised P&L", signed(t.unrealized_pnl)),
    card("Realised P&L", signed(t.realized_pnl)), card("Trades", String(t.trades)),
    card("Open positions", String(t.open_positions)), card("Errors", String(t.errors)),
    card("Uptime", `${Math.round(s.uptime_s)} s`),
    s.session ? card("Recording", s.session) : null);
}

function control(id, command) {
  const method = command === "remove" ? "DELETE" : "POST";
  const path = command === "remove" ? `/api/runners/${encodeURIComponent(id)}`
    : `/api/runners/${encodeURIComponent(id)}/${command}`;
  return api(path, { method });
}

function runnerRow(r) {
  const pos = r.position;
  const can = state.scope === "control";
  const btn = (label, command, cls) => h("button", {
    class: cls || "", "data-action": command,
    onclick: async (e) => {
      e.target.disabled = true;
      try { await control(r.id, command); } catch (err) { alert(err.message); }
    },
  }, label);
  // a runner halted by a risk limit resumes only by an explicit Resume
  const live = r.status === "running" || r.status === "paused" || r.status === "halted";
  return h("tr", { "data-runner-id": r.id, "data-status": r.status },
    h("td", {}, h("a", { href: `#/runner/${encodeURIComponent(r.id)}` }, r.id)),
    h("td", {}, h("span", { class: `status ${r.status}` }, r.status), r.reason && (r.status === "failed" || r.status === "halted") ?
      h("div", { class: "err" }, r.reason) : null),
    h("td", {}, r.state || "—"),
    h("td", {}, pos ? `${pos.side} ${fmt(pos.quantity, 4)} @ ${fmt(pos.entry_price)}` : "flat"),
    h("td", { class: "num" }, signed(r.unrealized_pnl)), h("td", { class: "num" }, signed(r.realized_pnl)),
    h("td", { class: "num" }, String(r.trades)), h("td", { class: "num" }, pct(r.win_rate)),
    h("td", { class: "num", title: utc(r.last_bar_time) }, age(r.last_bar_wall)),
    h("td", { class: "num", title: r.last_error || "" }, String(r.errors)),
    h("td", {}, can && live ? [r.status === "running" ? btn("Pause", "pause") : btn("Resume", "resume"),
      btn("Stop", "stop")] : null, can ? btn("Remove", "remove", "danger") : null));
}

async function addRunnerForm(wrap, refresh) {
  if (!state.strategies) state.strategies = await api("/api/strategies");
  const symbols = await api("/api/symbols");
  const feedNames = Object.keys(symbols.feeds);
  const field = (name, label, input) => h("label", {}, label, input, h("span", { class: "err", "data-error": name }));
  const feedSel = h("select", { name: "feed", "data-field": "feed" }, ...feedNames.map((f) => h("option", { value: f }, f)));
  const symSel = h("select", { name: "symbol", "data-field": "symbol" });
  const stratSel = h("select", { name: "strategy", "data-field": "strategy" },
    ...state.strategies.map((s) => h("option", { value: s.id }, s.id)));
  const params = h("div", { class: "params", id: "params" });
  const doc = h("p", { class: "doc", id: "strategy-doc" });
  const num = (name, value, step) => h("input", { type: "number", name, value, step: step || "any", "data-field": name });
  const form = h("form", { class: "add", id: "add-runner", novalidate: true },
    field("feed", "Feed", feedSel), field("symbol", "Symbol", symSel), field("strategy", "Strategy", stratSel),
    field("window_size", "Window (bars)", num("window_size", 500, 1)),
    field("execution.starting_cash", "Starting cash", num("execution.starting_cash", 10000)),
    field("execution.commission_bps", "Commission (bps)", num("execution.commission_bps", 10)),
    field("execution.slippage_bps", "Slippage (bps)", num("execution.slippage_bps", 1)),
    doc, params,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Add runner"),
      h("span", { class: "err", "data-error": "_" })));
  const fillSymbols = () => fill(symSel, ...(symbols.feeds[feedSel.value] || { symbols: [] }).symbols
    .map((s) => h("option", { value: s }, s)));
  const fillParams = () => {
    const s = state.strategies.find((x) => x.id === stratSel.value) || { params: {}, doc: "" };
    doc.textContent = s.error ? `This strategy does not load: ${s.error}` : s.doc;
    fill(params, ...Object.entries(s.params).map(([k, v]) =>
      field(`params.${k}`, `param ${k}`, typeof v === "boolean"
        ? h("select", { name: `params.${k}`, "data-field": `params.${k}`, "data-kind": "bool" },
          h("option", { value: "true", selected: v }, "true"), h("option", { value: "false", selected: !v }, "false"))
        : h("input", { type: typeof v === "number" ? "number" : "text", step: "any", name: `params.${k}`,
          value: String(v), "data-field": `params.${k}`, "data-kind": typeof v }))));
    params.prepend(...(Object.keys(s.params).length ? [] : [h("span", { class: "muted" }, "no parameters")]));
  };
  feedSel.addEventListener("change", fillSymbols);
  stratSel.addEventListener("change", fillParams);
  fillSymbols(); fillParams();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const el of form.querySelectorAll(".err")) { el.textContent = ""; el.classList.remove("ok"); }
    for (const el of form.querySelectorAll(".bad")) el.classList.remove("bad");
    const body = { feed: feedSel.value, symbol: symSel.value, strategy: stratSel.value, params: {}, execution: {} };
    for (const input of form.querySelectorAll("[data-field]")) {
      const name = input.dataset.field;
      if (["feed", "symbol", "strategy"].includes(name)) continue;
      const kind = input.dataset.kind || "number";
      let value = input.value;
      if (kind === "number") value = value.trim() === "" ? value : Number(value);
      else if (kind === "bool") value = value === "true";
      if (name.startsWith("params.")) body.params[name.slice(7)] = value;
      else if (name.startsWith("execution.")) body.execution[name.slice(10)] = value;
      else body[name] = value;
    }
    try {
      const r = await api("/api/runners", { method: "POST", body });
      const note = form.querySelector('[data-error="_"]');
      note.textContent = `added ${r.id}`;
      note.classList.add("ok");
      await refresh();
    } catch (err) {
      const errors = err.errors && err.errors.length ? err.errors : [{ field: err.field, message: err.message }];
      for (const x of errors) {
        const slot = x.field && form.querySelector(`[data-error="${CSS.escape(x.field)}"]`);
        const input = x.field && form.querySelector(`[data-field="${CSS.escape(x.field)}"]`);
        if (input) input.classList.add("bad");
        (slot || form.querySelector('[data-error="_"]')).textContent = x.message;
      }
    }
  });
  fill(wrap, form);
}

// -- charts -------------------------------------------------------------------------------------------

// Time-axis labels in UTC from Date's UTC getters: the library's default builds an Intl formatter
// per label, which cost a 10,000-candle chart's first draw more than the candles did.
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n) => (n < 10 ? "0" : "") + n;
function tickMark(time, type) {
  const d = new Date(time * 1000);
  switch (type) {
    case 0: return String(d.getUTCFullYear());
    case 1: return MONTHS[d.getUTCMonth()];
    case 2: return String(d.getUTCDate());
    case 3: return `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}`;
    default: return `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  }
}
function crosshairTime(time) {
  const d = new Date(time * 1000);
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCFullYear()).slice(2)} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}`;
}

function makeChart(el) {
  // The chart's own attribution logo brings a <style> element the CSP refuses; the page footer
  // carries the attribution link the library's NOTICE asks for instead.
  const LWC = window.LightweightCharts;
  // Sized now (the layout is due anyway) rather than by autoSize's first ResizeObserver callback,
  // which resized and redrew every canvas in the first frame; later resizes follow the box.
  const chart = LWC.createChart(el, {
    width: el.clientWidth, height: el.clientHeight,
    layout: { background: { type: "solid", color: "#ffffff" }, textColor: "#333", attributionLogo: false },
    grid: { vertLines: { color: "#eef0f3" }, horzLines: { color: "#eef0f3" } },
    timeScale: { timeVisible: true, secondsVisible: false, minBarSpacing: 0.01, tickMarkFormatter: tickMark },
    localization: { timeFormatter: crosshairTime },
    rightPriceScale: { borderVisible: false },
  });
  let size = [el.clientWidth, el.clientHeight];
  const ro = new ResizeObserver(() => {
    const now = [el.clientWidth, el.clientHeight];
    if (now[0] !== size[0] || now[1] !== size[1]) { size = now; chart.resize(now[0], now[1]); }
  });
  ro.observe(el);
  const remove = chart.remove.bind(chart);
  chart.remove = () => { ro.disconnect(); remove(); };
  return chart;
}

function candlesOf(cols) {
  const out = new Array(cols.timestamp.length);
  for (let i = 0; i < out.length; i++) {
    out[i] = { time: cols.timestamp[i] / 1000, open: cols.open[i], high: cols.high[i], low: cols.low[i],
               close: cols.close[i] };
  }
  return out;
}

function tradeMarkers(trades) {
  const m = [];
  for (const t of trades) {
    const long = t.side === "long";
    m.push({ time: t.entry_time / 1000, position: long ? "belowBar" : "aboveBar", shape: long ? "arrowUp" : "arrowDown",
             color: long ? "#16a34a" : "#dc2626", text: long ? "buy" : "sell" });
    if (t.exit_time) m.push({ time: t.exit_time / 1000, position: long ? "aboveBar" : "belowBar", shape: "circle",
                              color: "#2563eb", text: `exit ${t.pnl >= 0 ? "+" : ""}${fmt(t.pnl)}` });
  }
  return m.sort((a, b) => a.time - b.time);
}

function equityOf(trades, cash) {
  let eq = cash;
  const points = new Map();
  for (const t of trades) { eq += t.pnl; points.set(t.exit_time / 1000, eq); }
  return [...points.entries()].sort((a, b) => a[0] - b[0]).map(([time, value]) => ({ time, value }));
}

function kv(obj) {
  const dl = h("dl", { class: "kv" });
  const entries = Object.entries(obj || {});
  if (!entries.length) dl.append(h("dt", {}, "—"), h("dd", {}, ""));
  for (const [k, v] of entries) {
    dl.append(h("dt", {}, k), h("dd", {}, typeof v === "object" && v !== null ? JSON.stringify(v)
      : typeof v === "number" ? (Number.isInteger(v) ? String(v) : fmt(v, 4)) : v === null ? "—" : String(v)));
  }
  return dl;
}

// -- runner page ------------------------------------------------------------------------------------

async function runnerPage(id) {
  const enc = encodeURIComponent(id);
  const [snap, hist, trades] = await Promise.all([api(`/api/runners/${enc}/snapshot`),
    api(`/api/runners/${enc}/history?n=10000`), api(`/api/runners/${enc}/trades`)]);
  const LWC = window.LightweightCharts;
  const chartEl = h("div", { class: "chart", id: "chart", "data-candles": "0" });
  const eqEl = h("div", { class: "chart small", id: "equity" });
  const info = h("div", { id: "runner-info" });
  const logEl = h("div", { class: "log", id: "event-log" });
  const tradesBody = h("tbody", { id: "trade-rows" });
  const can = state.scope === "control";
  const msg = h("span", { class: "err", id: "runner-msg" });
  const act = (label, command, cls) => h("button", { class: cls || "", "data-action": command, onclick: async () => {
    msg.textContent = "";
    try { await control(id, command); msg.textContent = `${command}: sent`; } catch (err) { msg.textContent = err.message; }
  } }, label);
  fill(main, 
    h("h1", {}, id, " ", h("span", { class: `status ${snap.status}`, id: "runner-status" }, snap.status)),
    can ? h("div", { id: "runner-actions" }, act("Pause", "pause"), act("Resume", "resume"),
      act("Force exit", "exit", "danger"), act("Reload strategy", "reload"), act("Stop", "stop", "danger"), msg) : null,
    h("div", { class: "grid2" }, h("div", {}, chartEl, h("h2", {}, "Equity (closed trades)"), eqEl), info),
    h("h2", {}, "Events"), logEl,
    h("h2", {}, "Trades"), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      ...["Side", "Qty", "Entry (UTC)", "Entry", "Exit (UTC)", "Exit", "P&L", "Fees", "Reason"].map((t) => h("th", {}, t)))),
      tradesBody)));

  const chart = makeChart(chartEl);
  const series = chart.addSeries(LWC.CandlestickSeries, { upColor: "#16a34a", downColor: "#dc2626",
    borderVisible: false, wickUpColor: "#16a34a", wickDownColor: "#dc2626" });
  const t0 = performance.now();
  const candles = candlesOf(hist);
  series.setData(candles);
  let count = candles.length;
  chartEl.dataset.candles = String(count);
  requestAnimationFrame(() => requestAnimationFrame(() => {
    chartEl.dataset.drawMs = (performance.now() - t0).toFixed(1);
  }));
  let lastTime = candles.length ? candles[candles.length - 1].time : 0;
  let tradeList = trades.slice();
  const markers = LWC.createSeriesMarkers(series, tradeMarkers(tradeList));
  const eqChart = makeChart(eqEl);
  const eqSeries = eqChart.addSeries(LWC.LineSeries, { color: "#2563eb", lineWidth: 2 });
  const cash = snap.starting_cash || 10000;
  eqSeries.setData(equityOf(tradeList, cash));
  let lines = [];

  function renderTrades() {
    fill(tradesBody, ...tradeList.slice().reverse().slice(0, 200).map((t) => h("tr", {},
      h("td", {}, t.side), h("td", { class: "num" }, fmt(t.quantity, 4)), h("td", {}, utc(t.entry_time)),
      h("td", { class: "num" }, fmt(t.entry_price)), h("td", {}, utc(t.exit_time)), h("td", { class: "num" }, fmt(t.exit_price)),
      h("td", { class: "num" }, signed(t.pnl)), h("td", { class: "num" }, fmt(t.fees)), h("td", {}, t.exit_reason))));
    tradesBody.dataset.count = String(tradeList.length);
  }
  function renderInfo(s) {
    for (const l of lines) series.removePriceLine(l);
    lines = [];
    const p = s.position;
    if (p && p.stop_loss) lines.push(series.createPriceLine({ price: p.stop_loss, color: "#dc2626", title: "SL", lineStyle: 2 }));
    if (p && p.take_profit) lines.push(series.createPriceLine({ price: p.take_profit, color: "#16a34a", title: "TP", lineStyle: 2 }));
    if (p) lines.push(series.createPriceLine({ price: p.entry_price, color: "#6b7280", title: "entry", lineStyle: 1 }));
    const o = s.working_order;
    if (o) lines.push(series.createPriceLine({ price: o.price, color: "#2563eb", title: `${o.type} ${o.side}`, lineStyle: 3 }));
    document.getElementById("runner-status").textContent = s.status;
    document.getElementById("runner-status").className = `status ${s.status}`;
    fill(info, 
      h("h2", {}, "Position"), h("div", { id: "position", "data-open": p ? "yes" : "no" }, p ? kv({ side: p.side,
        quantity: p.quantity, entry: p.entry_price, "stop-loss": p.stop_loss, "take-profit": p.take_profit,
        mark: p.mark_price, unrealised: p.unrealized_pnl, since: utc(p.entry_time) }) : h("p", {}, "flat")),
      s.pending_order ? h("p", {}, "a market order fills at the next bar's open") : null,
      o ? h("div", { id: "working-order" }, h("h2", {}, "Working order"), kv({ side: o.side, type: o.type,
        price: o.price, quantity: o.quantity ?? "sized at fill", placed: utc(o.placed_time),
        expires: o.expires_time != null ? utc(o.expires_time) : o.bars_left != null ? `after ${o.bars_left} bars` : "—" }))
        : null,
      s.entries_blocked ? h("p", { class: "err", id: "entries-blocked" }, `entries blocked: ${s.entries_blocked}`) : null,
      h("h2", {}, "Runner"), kv({ state: s.state, equity: s.equity, "realised P&L": s.realized_pnl, trades: s.trades,
        "win rate": pct(s.win_rate), bars: s.stats.bars, errors: s.stats.errors, "lag (ms)": s.stats.lag_ms,
        strategy: s.strategy, reason: s.reason || "—" }),
      h("h2", {}, "Parameters"), kv(s.params), h("h2", {}, "Indicators"), kv(s.indicators),
      h("h2", {}, "Context"), kv(s.context));
  }
  // The strategy's indicators: price-scale ones over the candles, the others in a pane below.
  const palette = ["#f59e0b", "#8b5cf6", "#0ea5e9", "#ec4899", "#14b8a6", "#64748b"];
  const indicatorSeries = new Map();
  async function drawIndicators() {
    const ind = await api(`/api/runners/${enc}/indicators?n=10000`);
    for (const [label, values] of Object.entries(ind.series)) {
      let line = indicatorSeries.get(label);
      if (!line) {
        line = chart.addSeries(LWC.LineSeries, { color: palette[indicatorSeries.size % palette.length], lineWidth: 1,
          title: label, priceLineVisible: false, lastValueVisible: false }, ind.overlay[label] ? 0 : 1);
        indicatorSeries.set(label, line);
      }
      line.setData(ind.timestamp.map((t, i) => values[i] === null ? { time: t / 1000 } : { time: t / 1000, value: values[i] }));
    }
    chartEl.dataset.indicators = String(indicatorSeries.size);
  }
  drawIndicators().catch(() => {});
  every(5000, () => drawIndicators().catch(() => {}));
  renderInfo(snap);
  // The trades table is below the fold: built after the chart's first frame, not before it.
  requestAnimationFrame(() => setTimeout(renderTrades, 0));
  const refreshSnap = () => api(`/api/runners/${enc}/snapshot`).then(renderInfo).catch(() => {});
  const log = (ev) => {
    const { type, seq, time, ...rest } = ev;
    delete rest.runner_id; delete rest.symbol; delete rest.strategy;
    logEl.prepend(h("div", { "data-type": type }, `${utc(time)} #${seq} ${type} ${JSON.stringify(rest)}`));
    while (logEl.childElementCount > 300) logEl.lastElementChild.remove();
  };
  let pending = null;
  listen((ev) => {
    if (ev.type === "bar_received" && ev.symbol === snap.symbol) {
      const t = ev.timestamp / 1000;
      if (t < lastTime) return;
      series.update({ time: t, open: ev.open, high: ev.high, low: ev.low, close: ev.close });
      if (t > lastTime) { count += 1; chartEl.dataset.candles = String(count); }
      lastTime = t;
      return;
    }
    if (ev.runner_id !== id) return;
    log(ev);
    const booked = ev.type === "position_closed" && ev.trade ? [ev.trade]
      : ev.type === "position_reduced" && ev.trades ? ev.trades : [];   // a partial exit's trades
    if (booked.length) {
      tradeList.push(...booked);
      markers.setMarkers(tradeMarkers(tradeList));
      eqSeries.setData(equityOf(tradeList, cash));
      renderTrades();
    } else if (ev.type === "position_opened") {
      markers.setMarkers([...tradeMarkers(tradeList), { time: ev.timestamp / 1000, position: ev.side === "long" ?
        "belowBar" : "aboveBar", shape: ev.side === "long" ? "arrowUp" : "arrowDown", color: "#9333ea", text: "open" }]
        .sort((a, b) => a.time - b.time));
    }
    if (!pending) pending = setTimeout(() => { pending = null; refreshSnap(); }, 200);
  });
  every(2000, refreshSnap);
  state.page = { dispose: () => { chart.remove(); eqChart.remove(); } };
}

// -- sessions -----------------------------------------------------------------------------------------

async function sessionsPage() {
  const list = await api("/api/sessions");
  const rows = list.slice().reverse().map((s) => h("tr", { "data-session": s.id },
    h("td", {}, h("a", { href: `#/sessions/${encodeURIComponent(s.id)}` }, s.id)), h("td", {}, s.kind),
    h("td", {}, s.status), h("td", {}, s.created || "—"), h("td", { class: "num" }, String((s.runners || []).length)),
    h("td", { class: "num" }, s.bars === null || s.bars === undefined ? "—" : String(s.bars)),
    h("td", { class: "num" }, s.trades === null || s.trades === undefined ? "—" : String(s.trades)),
    h("td", { class: "num" }, signed(s.net_profit))));
  fill(main, h("h1", {}, "Recorded sessions"), list.length ? h("div", { class: "scroll" },
    h("table", { id: "sessions" }, h("thead", {}, h("tr", {}, ...["Session", "Kind", "Status", "Created", "Runners",
      "Bars", "Trades", "P&L"].map((t) => h("th", {}, t)))), h("tbody", {}, ...rows)))
    : h("p", { class: "muted" }, "No recorded sessions (start with --record DIR to record one)."));
}

async function sessionPage(sid) {
  const s = await api(`/api/sessions/${encodeURIComponent(sid)}`);
  const sel = h("select", { id: "session-runner" }, ...s.runners.map((r) => h("option", { value: r.key }, r.key)));
  const chartEl = h("div", { class: "chart", id: "session-chart" });
  const slider = h("input", { type: "range", min: "1", max: "1", value: "1", id: "scrub" });
  const at = h("div", { class: "muted", id: "scrub-at" });
  fill(main, h("h1", {}, `Session ${s.id}`), kv({ kind: s.kind, status: s.status, created: s.created,
    bars: s.bars, trades: s.trades, "net P&L": s.net_profit, live: s.live ? "yes (being recorded)" : "no" }),
  h("h2", {}, "Replay"), h("label", {}, "Runner ", sel), chartEl, slider, at);
  if (!s.runners.length) return;
  const LWC = window.LightweightCharts;
  const chart = makeChart(chartEl);
  const series = chart.addSeries(LWC.CandlestickSeries, { upColor: "#16a34a", downColor: "#dc2626", borderVisible: false,
    wickUpColor: "#16a34a", wickDownColor: "#dc2626" });
  const markers = LWC.createSeriesMarkers(series, []);
  let data = null, candles = [];
  function show(i) {
    series.setData(candles.slice(0, i));
    const t = i ? candles[i - 1].time : 0;
    markers.setMarkers(tradeMarkers(data.trades.filter((x) => x.entry_time / 1000 <= t))
      .filter((m) => m.time <= t));
    at.textContent = i ? `bar ${i} of ${candles.length}: ${utc(t * 1000)}, close ${fmt(candles[i - 1].close)}` : "no bars";
    chartEl.dataset.shown = String(i);
    // keep the whole session's time span in view while scrubbing
    chart.timeScale().setVisibleLogicalRange({ from: -1, to: Math.max(candles.length, 10) });
  }
  async function load() {
    data = await api(`/api/sessions/${encodeURIComponent(sid)}/bars?runner=${encodeURIComponent(sel.value)}`);
    candles = candlesOf(data);
    slider.max = String(Math.max(1, candles.length));
    slider.value = slider.max;
    show(candles.length);
  }
  slider.addEventListener("input", () => show(Number(slider.value)));
  sel.addEventListener("change", () => load().catch((e) => at.textContent = e.message));
  await load();
  state.page = { dispose: () => chart.remove() };
}

// -- start --------------------------------------------------------------------------------------------

async function boot() {
  try {
    const me = await api("/api/me");
    state.scope = me.scope;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { loginPage(); return; }
    fill(main, notice(`Cannot reach the server: ${err.message}`));
    return;
  }
  document.body.dataset.scope = state.scope;
  if (!state.ws) connect();
  await route();
}

window.addEventListener("hashchange", () => { if (state.scope) route(); });
boot();
