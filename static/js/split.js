/* The handle between a lesson and its terminal: drag it, or focus it and use the arrow keys. */
(function () {
  "use strict";
  var split = document.querySelector("[data-split]");
  var handle = split && split.querySelector("[data-split-handle]");
  if (!handle) return;

  function setWidth(percent) {
    percent = Math.max(20, Math.min(75, percent));
    split.style.setProperty("--lesson-width", percent + "%");
    window.localStorage.setItem("contained.split", String(percent));
  }

  var saved = Number(window.localStorage.getItem("contained.split"));
  if (saved) setWidth(saved);

  handle.addEventListener("pointerdown", function (event) {
    handle.setPointerCapture(event.pointerId);
    function move(e) {
      var box = split.getBoundingClientRect();
      setWidth(((e.clientX - box.left) / box.width) * 100);
    }
    function up() {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
    }
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
  });

  handle.addEventListener("keydown", function (event) {
    var current = parseFloat(split.style.getPropertyValue("--lesson-width")) || 45;
    if (event.key === "ArrowLeft") setWidth(current - 2);
    else if (event.key === "ArrowRight") setWidth(current + 2);
    else return;
    event.preventDefault();
  });
})();
