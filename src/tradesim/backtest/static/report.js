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
  var points = 0, charts = [];

  function makeChart(id) {
    // Transparent background: a painted canvas then means the chart really drew something.
    var chart = LWC.createChart(document.getElementById(id), {
      autoSize: true,
      layout: {background: {type: "solid", color: "transparent"}, textColor: "#333",
               attributionLogo: true},
      grid: {vertLines: {color: "#eef0f3"}, horzLines: {color: "#eef0f3"}},
      // Let fitContent squeeze thousands of candles into the width (the default floor is 0.5 px).
      timeScale: {timeVisible: true, secondsVisible: false, minBarSpacing: 0.01},
      // Same axis width everywhere so the time axes of stacked charts line up.
      rightPriceScale: {borderVisible: false, minimumWidth: 90}
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
    LWC.createSeriesMarkers(series, s.markers.map(function (m) {
      var k = MARKERS[m[1]];
      return {time: m[0], shape: k.shape, position: k.position, color: k.color, text: m[2]};
    }));
  });

  var equityChart = makeChart("equity");
  equityChart.addSeries(LWC.LineSeries, {color: BLUE, lineWidth: 2}).setData(line(data.equity));

  var ddChart = makeChart("drawdown");
  // A baseline at 0 % fills exactly the underwater area.
  ddChart.addSeries(LWC.BaselineSeries, {
    baseValue: {type: "price", price: 0}, lineWidth: 1,
    topLineColor: RED, topFillColor1: "rgba(0,0,0,0)", topFillColor2: "rgba(0,0,0,0)",
    bottomLineColor: RED, bottomFillColor1: "rgba(239,83,80,0.15)",
    bottomFillColor2: "rgba(239,83,80,0.45)", priceFormat: {type: "percent", precision: 2}
  }).setData(line(data.drawdown));

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
    charts.forEach(function (chart) { chart.timeScale().fitContent(); });
    requestAnimationFrame(function () {
      setTimeout(function () {
        var canvases = document.querySelectorAll("canvas");
        var count = 0;
        for (var i = 0; i < canvases.length; i++) if (painted(canvases[i])) count++;
        root.setAttribute("data-canvases", String(canvases.length));
        root.setAttribute("data-painted", String(count));
        root.setAttribute("data-points", String(points));
        root.setAttribute("data-rendered", "ok");
      }, 50);
    });
  });
})();
