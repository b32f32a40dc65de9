/*
 * "Open my terminal" without leaving the page. The form is posted with fetch, which follows
 * the redirect to the page the learner asked for, and swap.js puts that page in place of
 * this one. The terminal's libraries were loaded and compiled here while the learner typed
 * their name (start.html), so only the terminal's own scripts run after the click: no new
 * document, no second compile of xterm.js. Without JavaScript, if one of those libraries
 * did not load, or if anything goes wrong, the form posts as usual.
 */
(function () {
  "use strict";
  if (!window.fetch || !window.DOMParser) return;

  // A refused name: only the form is replaced, with what to fix, and the field has focus.
  // The rest of this page (a lesson's introduction) and its address stay.
  function showRefusal(next) {
    var refused = next.querySelector("section.start");
    if (!refused) throw new Error("no start form in the refusal");
    refused.querySelectorAll("script, link").forEach(function (el) { el.remove(); });
    var section = document.querySelector("section.start");
    var form = section.querySelector("form");
    form.replaceWith(document.adoptNode(refused.querySelector("form")));
    var field = section.querySelector("[aria-invalid=true]") || section.querySelector("input:not([type=hidden])");
    if (field) field.focus();
  }

  // On the document, so that a form swapped in after a refusal posts in place too.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("[data-start-in-place]")) return;
    // A library that failed to load here (a dropped connection) would leave the swapped-in
    // terminal without it: the plain post loads a whole page, and the libraries with it.
    var needs = (form.dataset.needs || "").split(" ").filter(Boolean);
    if (!needs.every(function (name) { return name in window; })) return;
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button) {
      button.disabled = true;
      button.textContent = "Starting your sandbox…";
    }
    window.containedSwap.fetchPage(form.action, { method: "POST", body: new FormData(form) })
      .then(function (got) {
        if (got.ok) window.containedSwap(got.page, got.url, false);
        else showRefusal(got.page);
      })
      .catch(function () {
        form.submit(); // the plain way: a full page load says whatever went wrong
      });
  });
})();
