/* siyu console: draw every Vega-Lite spec on the page with vega-embed (served by siyu, see charts.py).
   A chart is <div data-spec="ID"> beside <script type="application/json" id="ID">; htmx.onLoad runs
   this for the first page and again for every fragment htmx swaps in. */
(function () {
  "use strict";
  var zh = document.documentElement.lang === "zh-Hans";
  var options = {actions: false, renderer: "svg", tooltip: {theme: "light"}};

  function draw(root) {
    var targets = root.querySelectorAll ? root.querySelectorAll("[data-spec]") : [];
    if (root.matches && root.matches("[data-spec]")) { targets = [root].concat(Array.from(targets)); }
    Array.prototype.forEach.call(targets, function (target) {
      var source = document.getElementById(target.dataset.spec);
      if (!source || target.dataset.drawn) { return; }
      target.dataset.drawn = "1";
      window.vegaEmbed(target, JSON.parse(source.textContent), options).then(function () {
        target.setAttribute("data-chart-ready", "true");
      }).catch(function (error) {
        target.textContent = zh ? "图表无法显示：" + error.message : "The chart could not be drawn: " + error.message;
        target.classList.add("error");
      });
    });
  }

  if (window.htmx) { window.htmx.onLoad(draw); } else { document.addEventListener("DOMContentLoaded", function () { draw(document); }); }
})();
