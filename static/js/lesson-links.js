/*
 * A lesson opened from the list without loading a new document. Once the list has loaded
 * and the browser is idle, while the visitor reads, xterm.js and its addons are loaded and
 * run here; a click on a lesson then fetches its page and swap.js puts it in place of the
 * list, so only the terminal's own scripts run after the click (as "Open my terminal" does).
 * Chromium also keeps a script's compiled code from its second run: a lesson page loaded the
 * plain way (a new tab, a reload) starts from it instead of compiling xterm.js again.
 * A click with a modifier key, or before those libraries have run, navigates as usual, and
 * so does anything that goes wrong.
 */
(function () {
  "use strict";
  var me = document.currentScript;
  var sources = (me.dataset.sources || "").split(" ").filter(Boolean);
  var needs = (me.dataset.needs || "").split(" ").filter(Boolean);

  function runLibraries() {
    sources.forEach(function (src) {
      var script = document.createElement("script");
      script.src = src;
      script.async = false; // the addons after xterm.js, as a terminal page runs them
      document.head.appendChild(script);
    });
  }

  function whenIdle() {
    if (window.requestIdleCallback) window.requestIdleCallback(runLibraries, { timeout: 3000 });
    else window.setTimeout(runLibraries, 200);
  }

  if (document.readyState === "complete") whenIdle();
  else window.addEventListener("load", whenIdle, { once: true });

  function ready() {
    return window.fetch && window.DOMParser && needs.every(function (name) { return name in window; });
  }

  var opening = false; // a second click (a double click) while a page is on its way
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-in-place]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey || !ready()) return;
    event.preventDefault();
    if (opening) return;
    opening = true;
    var main = document.querySelector("main");
    main.setAttribute("aria-busy", "true");
    window.containedSwap.fetchPage(link.href)
      .then(function (got) {
        if (!got.ok) throw new Error("no page to show in place");
        window.containedSwap(got.page, got.url, true);
      })
      .catch(function () {
        location.href = link.href; // the plain way: a full page load says what went wrong
      });
  });
})();
