/*
 * "Open my terminal" without leaving the page. The form is posted with fetch, which follows
 * the redirect to the page the learner asked for; that page's <main> and header take the
 * place of these, and the scripts it brings run in their order. The terminal's libraries
 * were loaded and compiled here while the learner typed their name (start.html), so only
 * the terminal's own scripts run after the click: no new document, no second compile of
 * xterm.js. Without JavaScript, or if anything goes wrong, the form posts as usual.
 */
(function () {
  "use strict";
  var form = document.querySelector("[data-start-in-place]");
  if (!form || !window.fetch || !window.DOMParser) return;

  function runScripts(container, alreadyRun) {
    // A script parsed by DOMParser never runs: each is replaced by a new one, which does.
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

  // `url`: the address of the page swapped in, or null to keep this one (a refusal comes
  // back from /start/, which only takes a POST).
  function swapIn(html, url) {
    var next = new DOMParser().parseFromString(html, "text/html");
    var main = next.querySelector("main");
    if (!main) throw new Error("no <main> in the page after starting");
    var alreadyRun = {};
    Array.prototype.forEach.call(document.scripts, function (s) { if (s.src) alreadyRun[s.src] = true; });
    var header = next.querySelector(".site-header");
    if (header) document.querySelector(".site-header").replaceWith(document.adoptNode(header));
    main = document.adoptNode(main);
    document.querySelector("main").replaceWith(main);
    document.title = next.title;
    if (url && url !== location.href) history.replaceState(null, "", url);
    runScripts(main, alreadyRun);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button) {
      button.disabled = true;
      button.textContent = "Starting your sandbox…";
    }
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (type.indexOf("text/html") !== 0) throw new Error("not a page: " + type);
        return response.text().then(function (html) {
          swapIn(html, response.ok ? response.url : null);
        });
      })
      .catch(function () {
        form.submit(); // the plain way: a full page load says whatever went wrong
      });
  });
})();
