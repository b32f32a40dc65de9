/*
 * Opens the terminal's websocket before xterm.js and its addons are loaded and parsed (a
 * few hundred milliseconds on a slow machine), so the learner's sandbox starts meanwhile.
 * terminal.js takes the socket over with every frame that has arrived by then; until it
 * does, nothing is drawn or acknowledged. It asks for the size this browser's terminal last
 * had (a reload, the next lesson), so a running shell is not resized twice; terminal.js
 * sends the real size once it is drawn.
 */
(function () {
  "use strict";
  var panel = document.querySelector("[data-terminal]");
  if (!panel) return;

  // The terminal's websocket address: `params` are rows, cols, offset, session, node.
  function url(params) {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    var query = new URLSearchParams();
    Object.keys(params).forEach(function (key) {
      if (params[key] !== null && params[key] !== undefined) query.set(key, params[key]);
    });
    if (panel.dataset.lesson) query.set("lesson", panel.dataset.lesson);
    return scheme + "//" + location.host + panel.dataset.wsPath + "?" + query.toString();
  }

  var nodes = (panel.dataset.nodes || "").split(",").filter(Boolean);
  var size = /^(\d+)x(\d+)$/.exec(window.localStorage.getItem("contained.size") || "");
  var early = { url: url, frames: [], closed: null };
  early.socket = new WebSocket(url({
    rows: size ? size[1] : null,
    cols: size ? size[2] : null,
    offset: 0,
    node: nodes[0] || null
  }));
  early.socket.binaryType = "arraybuffer";
  early.socket.onmessage = function (event) { early.frames.push(event); };
  early.socket.onclose = function (event) { early.closed = event; };
  window.containedTerminal = early;
})();
