// A learner's page in a class: the instructor's messages appear on screen, and when the class
// is paused or ended the page says so (an ended class also closes the terminal for good).
// Pages of learners in no running class are told so at once (close 4404) and stay quiet.
// A lesson opened from the class's page comes in place (lesson-links.js), and this script,
// run already, is not run again: it finds the page's <main> each time, never keeps one.
"use strict";

(function () {
  if (!document.getElementById("main")) return;

  function banner(kind, text, dismissable) {
    const main = document.getElementById("main");
    let box = main.querySelector(`.class-banner[data-kind="${kind}"]`);
    if (!box) {
      box = document.createElement("div");
      box.className = "notice class-banner";
      box.dataset.kind = kind;
      box.setAttribute("role", "alert");
      main.prepend(box);
    }
    box.replaceChildren();
    const words = document.createElement("span");
    words.textContent = text;
    box.append(words);
    if (dismissable) {
      const close = document.createElement("button");
      close.type = "button";
      close.className = "button button-small button-quiet";
      close.textContent = "Dismiss";
      close.addEventListener("click", () => box.remove());
      box.append(" ", close);
    }
  }

  function onState(state) {
    const paused = document.getElementById("main").querySelector('.class-banner[data-kind="state"]');
    if (state === "open") {
      if (paused) paused.remove();
    } else if (state === "paused") {
      banner("state", "Your instructor has paused the class.", false);
    } else if (state === "ended") {
      banner("state", "Your instructor ended the class. Your work and your files are kept.", false);
      if (window.contained) window.contained.stop("The class has ended.");
    }
  }

  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/classroom/`);
    socket.onopen = () => { delay = 1000; };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.event === "message") banner("message", `Message from your instructor: ${event.message}`, true);
      else if (event.event === "state") onState(event.state);
    };
    socket.onclose = (closed) => {
      if (closed.code === 4404) return; // in no running class
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
