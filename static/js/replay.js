// Replays one recorded session with the vendored asciinema player.
"use strict";

(function () {
  const box = document.querySelector("[data-replay]");
  const status = document.querySelector("[data-replay-status]");
  if (!box || !window.AsciinemaPlayer) {
    if (status) status.textContent = "The player could not load.";
    return;
  }
  const player = window.AsciinemaPlayer.create(box.dataset.castUrl, box, {
    fit: "width",
    idleTimeLimit: 2,
    preload: true,
  });
  player.addEventListener("play", () => { status.textContent = "Playing. Space pauses; arrows seek."; });
  player.addEventListener("pause", () => { status.textContent = "Paused."; });
  player.addEventListener("ended", () => { status.textContent = "The end of the session."; });
  status.textContent = "Ready: press play, or Space.";
  window.containedReplay = player;
})();
