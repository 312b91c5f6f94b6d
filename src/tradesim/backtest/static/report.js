// The report page's charts (TradingView Lightweight Charts); data from #report-data.
(function () {
  "use strict";
  var root = document.documentElement;
  var LWC = window.LightweightCharts;
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var GREEN = "#26a69a", RED = "#ef5350", BLUE = "#2962ff", ORANGE = "#ff9800";
  var MARKERS = [
    {shape: "arrowUp", position: "belowBar", color: BLUE},     // long entry
    {shape: "arrowDown", position: "aboveBar", color: ORANGE}, // short entry
    {shape: "circle", position: "aboveBar", color: GREEN},     // exit with profit
    {shape: "circle", position: "aboveBar", color: RED}        // exit with loss
  ];
  var points = 0, charts = [], lengths = [];  // lengths: points of each chart's series
  // Markers are drawn only while at most this many fall in the visible range; beyond that
  // they would hide the candles (zoom in to see them).
  var MAX_VISIBLE_MARKERS = 150;
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function two(n) { return (n < 10 ? "0" : "") + n; }

  // Axis labels in UTC, by what the tick marks: year, month, day or time of day.
  function tickLabel(time, kind) {
    var d = new Date(time * 1000);
    if (kind === 0) return String(d.getUTCFullYear());
    if (kind === 1) return MONTHS[d.getUTCMonth()];
    if (kind === 2) return String(d.getUTCDate());
    return two(d.getUTCHours()) + ":" + two(d.getUTCMinutes());
  }

  function makeChart(id) {
    // Transparent background: a painted canvas then means the chart really drew something.
    var chart = LWC.createChart(document.getElementById(id), {
      autoSize: true,
      layout: {background: {type: "solid", color: "transparent"}, textColor: "#333",
               attributionLogo: true},
      grid: {vertLines: {color: "#eef0f3"}, horzLines: {color: "#eef0f3"}},
      // Let fitContent squeeze thousands of candles into the width (the default floor is 0.5 px).
      timeScale: {timeVisible: true, secondsVisible: false, minBarSpacing: 0.01,
                  tickMarkFormatter: tickLabel},
      // Same axis width everywhere so the time axes of stacked charts line up; margins keep
      // the highest and lowest price labels inside the chart.
      rightPriceScale: {borderVisible: false, minimumWidth: 90,
                        scaleMargins: {top: 0.12, bottom: 0.08}}
    });
    charts.push(chart);
    return chart;
  }

  function line(columns) {
    var out = new Array(columns.t.length);
    for (var i = 0; i < out.length; i++) out[i] = {time: columns.t[i], value: columns.v[i]};
    points += out.length;
    return out;
  }

  data.symbols.forEach(function (s) {
    var c = s.candles, bars = new Array(c.t.length);
    for (var i = 0; i < bars.length; i++) {
      bars[i] = {time: c.t[i], open: c.o[i], high: c.h[i], low: c.l[i], close: c.c[i]};
    }
    points += bars.length;
    var chart = makeChart("price-" + s.index);
    var series = chart.addSeries(LWC.CandlestickSeries, {
      upColor: GREEN, downColor: RED, borderVisible: false, wickUpColor: GREEN, wickDownColor: RED
    });
    series.setData(bars);
    lengths[charts.indexOf(chart)] = bars.length;
    var all = s.markers.map(function (m) {
      var k = MARKERS[m[1]];
      return {time: m[0], shape: k.shape, position: k.position, color: k.color, text: m[2]};
    });
    var layer = LWC.createSeriesMarkers(series, []);
    var note = document.getElementById("markers-" + s.index);
    var shown = -1;
    function firstAtOrAfter(t) {   // markers are sorted by time
      var lo = 0, hi = all.length;
      while (lo < hi) { var mid = (lo + hi) >> 1; if (all[mid].time < t) lo = mid + 1; else hi = mid; }
      return lo;
    }
    function showLegible(range) {
      if (!range) return;
      var a = firstAtOrAfter(range.from), b = firstAtOrAfter(range.to + 1);
      var visible = b - a, want = visible <= MAX_VISIBLE_MARKERS ? 1 : 0;
      if (want !== shown) {
        layer.setMarkers(want ? all : []);
        shown = want;
      }
      if (note) {
        note.textContent = want || !all.length ? "" :
          visible.toLocaleString("en") + " trade markers in view: zoom in (scroll or pinch) to see them.";
      }
      root.setAttribute("data-markers-" + s.index, want ? "shown" : "hidden");
    }
    chart.timeScale().subscribeVisibleTimeRangeChange(showLegible);
  });

  var equityChart = makeChart("equity");
  equityChart.addSeries(LWC.LineSeries, {color: BLUE, lineWidth: 2}).setData(line(data.equity));
  lengths[charts.indexOf(equityChart)] = data.equity.t.length;

  var ddChart = makeChart("drawdown");
  // A baseline at 0 % fills exactly the underwater area.
  ddChart.addSeries(LWC.BaselineSeries, {
    baseValue: {type: "price", price: 0}, lineWidth: 1,
    topLineColor: RED, topFillColor1: "rgba(0,0,0,0)", topFillColor2: "rgba(0,0,0,0)",
    bottomLineColor: RED, bottomFillColor1: "rgba(239,83,80,0.15)",
    bottomFillColor2: "rgba(239,83,80,0.45)", priceFormat: {type: "percent", precision: 2}
  }).setData(line(data.drawdown));
  lengths[charts.indexOf(ddChart)] = data.drawdown.t.length;

  // The portfolio's P&L and exposure per symbol (when the report has them).
  var PALETTE = [BLUE, ORANGE, "#8e24aa", GREEN, RED, "#546e7a"];
  if (data.portfolio) {
    var pnlChart = makeChart("pnl");
    pnlChart.addSeries(LWC.LineSeries, {color: BLUE, lineWidth: 2, title: "realised"})
      .setData(line(data.portfolio.realised));
    pnlChart.addSeries(LWC.LineSeries, {color: ORANGE, lineWidth: 1, title: "unrealised"})
      .setData(line(data.portfolio.unrealised));
    lengths[charts.indexOf(pnlChart)] = data.portfolio.realised.t.length;
    var exposureChart = makeChart("exposure");
    data.portfolio.exposure.forEach(function (x, i) {
      exposureChart.addSeries(LWC.LineSeries, {color: PALETTE[i % PALETTE.length], lineWidth: 1,
                                               title: x.symbol}).setData(line(x));
      lengths[charts.indexOf(exposureChart)] = Math.max(lengths[charts.indexOf(exposureChart)] || 0,
                                                        x.t.length);
    });
  }

  function painted(canvas) {
    if (!canvas.width || !canvas.height) return false;
    try {
      var px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (var i = 3; i < px.length; i += 4) if (px[i] !== 0) return true;
    } catch (e) { /* a canvas we cannot read counts as unpainted */ }
    return false;
  }

  // autoSize measures the containers asynchronously, so fit the whole series once sized;
  // charts paint on animation frames, so record the outcome after two more.
  requestAnimationFrame(function () {
    charts.forEach(function (chart) {
      // The whole series, with a little room at both ends so that the first and last time
      // labels, centred on the end bars, are not cut by the chart's edge.
      var n = lengths[charts.indexOf(chart)], pad = Math.max(1, n * 0.02);
      chart.timeScale().setVisibleLogicalRange({from: -pad, to: n - 1 + pad});
    });
    requestAnimationFrame(function () {
      setTimeout(function () {
        var canvases = document.querySelectorAll("canvas");
        var count = 0;
        for (var i = 0; i < canvases.length; i++) if (painted(canvases[i])) count++;
        root.setAttribute("data-canvases", String(canvases.length));
        root.setAttribute("data-painted", String(count));
        root.setAttribute("data-points", String(points));
        ["pnl", "exposure"].forEach(function (id) {   // the portfolio's charts, when present
          var box = document.getElementById(id), n = 0;
          if (!box) return;
          box.querySelectorAll("canvas").forEach(function (c) { if (painted(c)) n++; });
          root.setAttribute("data-painted-" + id, String(n));
        });
        // Nothing wider than the window (a wide table scrolls inside its own box).
        root.setAttribute("data-page-overflow", String(root.scrollWidth > root.clientWidth));
        root.setAttribute("data-rendered", "ok");
      }, 50);
    });
  });
})();
