/* The learner's terminal: xterm.js on a websocket to their sandbox (docs/terminal-protocol.md).
 *
 * Output arrives with its absolute offset, and is acknowledged once xterm has drawn it (every
 * `ack_every` bytes, from hello), so a program that floods output is held back at the
 * sandbox, not buffered in the browser.
 * A dropped connection comes back with the session and offset, and gets exactly what it missed.
 */
(function () {
  "use strict";

  var panel = document.querySelector("[data-terminal]");
  if (!panel) return;

  var OP_INPUT = 0, OP_RESIZE = 1, OP_ACK = 2;
  var FINAL_CLOSES = { 4401: true, 4403: true, 4409: true, 4429: true };
  var screenEl = panel.querySelector("[data-terminal-screen]");
  var statusEl = panel.querySelector("[data-terminal-status]");
  var encoder = new TextEncoder();
  var store = window.localStorage;

  var THEMES = {
    dark: { background: "#101418", foreground: "#e6edf3", cursor: "#7ee787", selectionBackground: "#264f78" },
    light: { background: "#fbfbf8", foreground: "#1f2328", cursor: "#0969da", selectionBackground: "#b6d7ff" }
  };

  function preferredTheme() {
    var saved = store.getItem("contained.theme");
    if (saved === "dark" || saved === "light") return saved;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  var theme = preferredTheme();
  var term = new Terminal({
    allowProposedApi: true, // the unicode11 addon needs it
    cursorBlink: true,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace",
    fontSize: Number(store.getItem("contained.fontSize")) || 15,
    scrollback: 5000,
    theme: THEMES[theme]
  });
  var fit = new FitAddon.FitAddon();
  var search = null; // loaded after the first output, below
  var extrasLoaded = false; // WebGL and search: see loadExtras
  var pendingSearch = null;
  var unicode = new Unicode11Addon.Unicode11Addon();
  term.loadAddon(fit);
  term.loadAddon(unicode);
  term.loadAddon(new WebLinksAddon.WebLinksAddon());
  term.unicode.activeVersion = "11";
  term.open(screenEl);
  panel.dataset.renderer = "dom";
  fit.fit();

  var ws = null;
  var session = null;
  var offset = 0;
  var acked = 0; // the last offset acknowledged
  var ackEvery = 0; // from hello; 0 acknowledges every frame
  var attempts = 0;
  var everConnected = false;
  // A lesson with machines of its own (web, db): one terminal each, one tab each.
  var nodes = (panel.dataset.nodes || "").split(",").filter(Boolean);
  var node = nodes[0] || null;
  var sessions = {};

  function setStatus(text, state) {
    statusEl.textContent = text;
    panel.dataset.state = state;
  }

  function send(op, payload) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    var frame = new Uint8Array(1 + payload.length);
    frame[0] = op;
    frame.set(payload, 1);
    ws.send(frame);
    return true;
  }

  function u64(value) {
    var bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(value));
    return bytes;
  }

  // A watcher's terminal: the learner's size is the one that counts, so never send ours.
  var watching = panel.dataset.readonly === "true";

  function sendResize() {
    if (watching) return;
    store.setItem("contained.size", term.rows + "x" + term.cols); // for the next page's early socket
    var bytes = new Uint8Array(4);
    var view = new DataView(bytes.buffer);
    view.setUint16(0, term.rows);
    view.setUint16(2, term.cols);
    send(OP_RESIZE, bytes);
  }

  // terminal-early.js opened the first socket; this one takes it over.
  var early = window.containedTerminal;

  function socketUrl() {
    return early.url({ rows: term.rows, cols: term.cols, offset: offset, session: session, node: node });
  }

  function onText(message) {
    if (message.type === "hello") {
      if (message.reset) term.reset();
      session = message.session;
      offset = message.offset;
      acked = message.offset;
      ackEvery = message.ack_every || 0;
      attempts = 0;
      sendResize(); // the early socket may not have known it
      var text = (watching ? "Watching " : "Connected to ") + message.hostname;
      if (watching) {
        text += " · read-only";
      } else if (message.startup_ms) {
        text += " · your container started in " + Math.round(message.startup_ms) + " ms";
      }
      setStatus(text, "connected");
      panel.dataset.hostname = message.hostname || "";
      everConnected = true;
    } else if (message.type === "event") {
      if (message.event === "stopped") {
        setStatus("Your sandbox stopped (" + message.reason + "); starting a new one…", "restarting");
      } else if (message.event === "exit") {
        setStatus("The shell ended; starting a new one…", "restarting");
        session = null;
      } else if (message.event === "error" && message.code === "read_only") {
        setStatus("Read-only: the sandbox service refuses your keys here.", "connected");
      } else if (message.event === "detached") {
        setStatus("This terminal is open in another window. Reload to use it here.", "closed");
        attempts = -1;
      }
    } else if (message.type === "error") {
      setStatus(message.message, "error");
    }
  }

  function onOutput(buffer, from) {
    var view = new DataView(buffer);
    var at = Number(view.getBigUint64(1));
    var data = new Uint8Array(buffer, 9);
    var end = at + data.length;
    offset = end;
    // Acknowledged once `ackEvery` bytes are drawn since the last ack: a flood is still held
    // back at the sandbox, and a keystroke's echo costs no message back.
    term.write(data, function () {
      if (!extrasLoaded) loadExtrasAfterPaint();
      // Drawn after a switch or a new shell: its offsets are another session's.
      if (from !== ws) return;
      if (end - acked >= ackEvery) {
        acked = end;
        send(OP_ACK, u64(end));
      }
    });
  }

  function connect() {
    setStatus(everConnected ? "Reconnecting…" : "Starting your sandbox…", "connecting");
    var taken = early.socket;
    early.socket = null;
    var mine = taken || new WebSocket(socketUrl());
    ws = mine;
    mine.binaryType = "arraybuffer";
    mine.onmessage = function (event) {
      if (mine !== ws) return; // a socket of the machine we just left
      if (typeof event.data === "string") onText(JSON.parse(event.data));
      else onOutput(event.data, mine);
    };
    mine.onclose = function (event) {
      if (mine !== ws) return;
      ws = null;
      if (FINAL_CLOSES[event.code] || attempts < 0) {
        if (event.code === 4401) setStatus("Please start as a learner first.", "closed");
        else if (event.code === 4403) setStatus("This terminal is not yours to watch.", "closed");
        else if (panel.dataset.state !== "error" && attempts >= 0) setStatus("Disconnected.", "closed");
        return;
      }
      attempts += 1;
      var delay = Math.min(10000, 250 * Math.pow(2, Math.min(attempts, 6)));
      if (panel.dataset.state !== "restarting") setStatus("Reconnecting…", "connecting");
      window.setTimeout(connect, delay);
    };
    if (taken) {
      early.frames.splice(0).forEach(mine.onmessage);
      if (early.closed) mine.onclose(early.closed);
    }
  }

  function switchTo(name) {
    if (name === node) return;
    sessions[node] = session;
    node = name;
    session = sessions[name] || null;
    offset = 0;
    term.reset();
    var old = ws;
    ws = null;
    if (old) old.close();
    renderTabs();
    connect();
    term.focus();
  }

  function renderTabs() {
    var bar = panel.querySelector("[data-terminal-nodes]");
    bar.textContent = "";
    nodes.forEach(function (name) {
      var tab = document.createElement("button");
      tab.type = "button";
      tab.className = "button button-small" + (name === node ? "" : " button-quiet");
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-selected", name === node ? "true" : "false");
      tab.textContent = name;
      tab.addEventListener("click", function () { switchTo(name); });
      bar.appendChild(tab);
    });
  }
  if (nodes.length) renderTabs();

  term.onData(function (data) { send(OP_INPUT, encoder.encode(data)); });
  term.onBinary(function (data) {
    var bytes = new Uint8Array(data.length);
    for (var i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 255;
    send(OP_INPUT, bytes);
  });
  term.onResize(sendResize);

  // Ctrl+Shift+C / Ctrl+Shift+V copy and paste, as in desktop terminals; Ctrl+C with a
  // selection copies it, without one it interrupts the program.
  term.attachCustomKeyEventHandler(function (event) {
    if (event.type !== "keydown") return true;
    var key = event.key.toLowerCase();
    if (event.ctrlKey && (event.shiftKey || term.hasSelection()) && key === "c") {
      if (term.hasSelection() && navigator.clipboard) navigator.clipboard.writeText(term.getSelection());
      event.preventDefault();
      return false;
    }
    if (event.ctrlKey && event.shiftKey && key === "v") {
      if (navigator.clipboard) navigator.clipboard.readText().then(function (text) { term.paste(text); });
      event.preventDefault();
      return false;
    }
    return true;
  });

  var refit = null;
  new ResizeObserver(function () {
    window.clearTimeout(refit);
    refit = window.setTimeout(function () { fit.fit(); }, 50);
  }).observe(screenEl);

  function setFontSize(size) {
    size = Math.max(9, Math.min(32, size));
    term.options.fontSize = size;
    store.setItem("contained.fontSize", String(size));
    fit.fit();
  }

  panel.addEventListener("click", function (event) {
    var button = event.target.closest("[data-terminal-action]");
    if (!button) return;
    var action = button.dataset.terminalAction;
    if (action === "smaller") setFontSize(term.options.fontSize - 1);
    if (action === "larger") setFontSize(term.options.fontSize + 1);
    if (action === "theme") {
      theme = theme === "dark" ? "light" : "dark";
      store.setItem("contained.theme", theme);
      term.options.theme = THEMES[theme];
      panel.dataset.theme = theme;
    }
    if (action === "search") {
      var needle = window.prompt("Find in the terminal:");
      if (needle && search) search.findNext(needle);
      else if (needle) pendingSearch = needle; // the addon is still loading
    }
    term.focus();
  });
  panel.dataset.theme = theme;

  /* "Run in terminal" on every code block of the lesson beside it. */
  function typeCommand(text) {
    send(OP_INPUT, encoder.encode(text.replace(/\n+$/, "") + "\r"));
    term.focus();
  }
  document.querySelectorAll("[data-lesson] pre > code").forEach(function (code) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button button-small run-in-terminal";
    button.textContent = "Run in terminal";
    button.addEventListener("click", function () { typeCommand(code.textContent); });
    code.parentElement.appendChild(button);
  });

  // For the browser tests and for anyone curious in the console.
  window.contained = {
    term: term,
    type: typeCommand,
    switchTo: switchTo,
    node: function () { return node; },
    // Close for good (the class ended): no reconnect, and the reason in the status line.
    stop: function (reason) {
      attempts = -1;
      var old = ws;
      ws = null;
      if (old) old.close();
      setStatus(reason, "closed");
    },
    text: function () {
      var lines = [];
      var buffer = term.buffer.active;
      for (var i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
      return lines.join("\n");
    }
  };

  connect();
  term.focus();

  // The WebGL renderer (250 KB) and search are loaded once the first output is on the
  // screen, not before: setting up WebGL can hold the page for a hundred milliseconds or
  // more (far longer without a GPU), and the learner's prompt should not wait for it. The
  // DOM renderer draws until then. With no output for a while, they load anyway.
  function loadLater(src, ready) {
    var script = document.createElement("script");
    script.src = src;
    script.onload = ready;
    document.body.appendChild(script);
  }
  function loadExtras() {
    if (extrasLoaded) return;
    extrasLoaded = true;
    loadLater(panel.dataset.webglSrc, function () {
      try {
        var webgl = new WebglAddon.WebglAddon();
        webgl.onContextLoss(function () { webgl.dispose(); panel.dataset.renderer = "dom"; });
        term.loadAddon(webgl);
        panel.dataset.renderer = "webgl";
      } catch (e) {
        // No WebGL here (old GPU, headless browser): the DOM renderer goes on drawing.
      }
    });
    loadLater(panel.dataset.searchSrc, function () {
      search = new SearchAddon.SearchAddon();
      term.loadAddon(search);
      if (pendingSearch) search.findNext(pendingSearch);
    });
  }
  // After the frame that paints the output just written.
  function loadExtrasAfterPaint() {
    window.requestAnimationFrame(function () { window.setTimeout(loadExtras, 0); });
  }
  window.setTimeout(loadExtras, 3000);
})();
