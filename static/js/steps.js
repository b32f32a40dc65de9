/* Steps of a lesson: Check asks the server, which asks sandboxd to read the sandbox from the
 * host side; hints come one at a time. While a step is open (the first one not passed), it is
 * checked quietly every few seconds, so passing it needs no click. */
(function () {
  "use strict";
  var list = document.querySelector("[data-steps]");
  if (!list) return;
  var token = list.querySelector("input[name=csrfmiddlewaretoken]").value;
  var AUTO_EVERY = 5000;

  function post(url, fields) {
    // A FormData keeps repeated fields (several checked answers); URLSearchParams takes it.
    var body = new URLSearchParams(fields || {});
    return fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": token },
      body: body,
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().then(function (data) { data.status = response.status; return data; });
    });
  }

  function render(step, data) {
    var box = step.querySelector("[data-step-result]");
    box.textContent = "";
    if (data.error) {
      var p = document.createElement("p");
      p.className = "error";
      p.textContent = data.error;
      box.appendChild(p);
      return;
    }
    if (data.passed) {
      step.classList.add("step-passed");
      step.dataset.passed = "1";
    }
    var heading = document.createElement("p");
    heading.className = data.passed ? "passed" : "not-yet";
    heading.textContent = data.passed ? "Passed." : "Not yet.";
    box.appendChild(heading);
    data.results.forEach(function (result) {
      var dl = document.createElement("dl");
      [["Seen", result.observed], ["Expected", result.expected]].forEach(function (pair) {
        var dt = document.createElement("dt");
        dt.textContent = pair[0];
        var dd = document.createElement("dd");
        dd.textContent = pair[1];
        dl.appendChild(dt);
        dl.appendChild(dd);
      });
      box.appendChild(dl);
    });
  }

  list.addEventListener("click", function (event) {
    var step = event.target.closest("[data-step]");
    if (!step) return;
    if (event.target.closest("[data-step-check]")) {
      var quiz = step.querySelector("[data-quiz]");
      var fields = quiz ? new FormData(quiz) : undefined;
      post(step.dataset.checkUrl, fields).then(function (data) { render(step, data); });
    } else if (event.target.closest("[data-step-hint]")) {
      post(step.dataset.hintUrl).then(function (data) {
        var hints = step.querySelector("[data-step-hints]");
        if (data.hint) {
          var div = document.createElement("div");
          div.className = "hint";
          div.innerHTML = data.hint; // Markdown of the lesson's own file, rendered by the server
          hints.appendChild(div);
        }
        if (!data.left) event.target.closest("[data-step-hint]").disabled = true;
      });
    }
  });

  function openStep() {
    return list.querySelector("[data-step][data-has-checks='1'][data-passed='0']");
  }

  // A step's setup runs once per page, when the step is the open one, after the terminal
  // has had a moment to start the sandbox (retried while it is still starting).
  function prepare(step, tries) {
    if (!step || !step.dataset.prepareUrl || step.dataset.prepared) return;
    post(step.dataset.prepareUrl).then(function (data) {
      if (!data.error) { step.dataset.prepared = "1"; return; }
      if (tries > 0) window.setTimeout(function () { prepare(step, tries - 1); }, 2000);
    });
  }
  prepare(list.querySelector("[data-step][data-passed='0']"), 10);

  window.setInterval(function () {
    var step = openStep();
    if (!step || document.hidden) return;
    post(step.dataset.checkUrl, { auto: "1" }).then(function (data) {
      if (data.passed) {
        render(step, data);
        prepare(list.querySelector("[data-step][data-passed='0']"), 10);
      }
    });
  }, AUTO_EVERY);
})();
