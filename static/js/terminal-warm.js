/*
 * Runs the terminal's libraries on a page that leads to a terminal (the list of lessons),
 * once it has loaded and the browser is idle, while the visitor reads. Chromium keeps the
 * compiled code of a script from its second run (V8's code cache), and producing it holds
 * the page up (30-40 ms for xterm.js here): done here, the lesson they open next starts its
 * terminal from compiled code instead of compiling xterm.js while they wait.
 */
(function () {
  "use strict";
  var me = document.currentScript;
  var sources = (me.dataset.sources || "").split(" ").filter(Boolean);

  function run() {
    sources.forEach(function (src) {
      var script = document.createElement("script");
      script.src = src;
      script.async = false; // the addons after xterm.js, as a terminal page runs them
      document.head.appendChild(script);
    });
  }

  function whenIdle() {
    if (window.requestIdleCallback) window.requestIdleCallback(run, { timeout: 3000 });
    else window.setTimeout(run, 200);
  }

  if (document.readyState === "complete") whenIdle();
  else window.addEventListener("load", whenIdle, { once: true });
})();
