/*
 * Another page of this site in place of this one, without loading a new document: its
 * <main> and header replace ours, its title becomes ours, and the scripts it brings run in
 * their order, except those this document has run already. xterm.js and its addons are then
 * compiled and run once, before the click, and only the terminal's own scripts run after it.
 * start.js uses it for "Open my terminal", lesson-links.js for a lesson opened from the list;
 * both fetch the page with `containedSwap.fetchPage`.
 */
(function () {
  "use strict";

  // A script parsed by DOMParser never runs: each is replaced by a new one, which does.
  function runScripts(container, alreadyRun) {
    Array.prototype.forEach.call(container.querySelectorAll("script[src]"), function (old) {
      if (alreadyRun[old.src]) {
        old.remove();
        return;
      }
      var script = document.createElement("script");
      script.src = old.src;
      script.async = false; // in document order, as the page would have run them
      old.replaceWith(script);
    });
  }

  // Back to the page this one replaced: that document is gone, so it is loaded anew.
  var reloadOnBack = false;
  function watchBack() {
    if (reloadOnBack) return;
    reloadOnBack = true;
    window.addEventListener("popstate", function () { location.reload(); });
  }

  /* `next`: the page, parsed; `url`: its address; `push`: a new history entry (a link
   * followed) rather than this one's address replaced (a form posted). */
  window.containedSwap = function (next, url, push) {
    var main = next.querySelector("main");
    if (!main) throw new Error("no <main> in the page");
    var alreadyRun = {};
    Array.prototype.forEach.call(document.scripts, function (s) { if (s.src) alreadyRun[s.src] = true; });
    var header = next.querySelector(".site-header");
    if (header) document.querySelector(".site-header").replaceWith(document.adoptNode(header));
    main = document.adoptNode(main);
    document.querySelector("main").replaceWith(main);
    document.title = next.title;
    if (push) {
      history.pushState(null, "", url);
      watchBack();
      window.scrollTo(0, 0);
      main.focus({ preventScroll: true }); // where a new page would start reading
    } else if (url !== location.href) {
      history.replaceState(null, "", url);
    }
    runScripts(main, alreadyRun);
  };

  /* A page of this site, fetched (following redirects) and parsed: {ok, url, page}. Fails
   * if the answer is not HTML, so a caller falls back to the plain way. */
  window.containedSwap.fetchPage = function (url, init) {
    return fetch(url, Object.assign({ credentials: "same-origin" }, init)).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("text/html") !== 0) throw new Error("not a page: " + type);
      return response.text().then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        return { ok: response.ok, url: response.url, page: page };
      });
    });
  };
})();
