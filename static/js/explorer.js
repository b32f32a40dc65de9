/* The namespace explorer: the learner's processes, boxed by pid namespace, tagged with every
 * other namespace they do not share with the sandbox. Read from the host side by sandboxd
 * (the runtime's snapshot) every two seconds while it is open. */
(function () {
  "use strict";
  var panel = document.querySelector("[data-explorer]");
  if (!panel) return;
  var view = panel.querySelector("[data-explorer-view]");
  var EVERY = 2000;
  var OTHERS = ["mnt", "net", "uts", "ipc", "user", "cgroup"];

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function render(snapshot) {
    var boxes = {};
    var order = [];
    snapshot.processes.forEach(function (p) {
      var pidns = p.namespaces.pid;
      var key = pidns.is + ":" + pidns.inode;
      if (!boxes[key]) {
        boxes[key] = { label: pidns.is, inode: pidns.inode, depth: p.nspid.length, processes: [] };
        order.push(key);
      }
      boxes[key].processes.push(p);
    });
    order.sort(function (a, b) { return boxes[a].depth - boxes[b].depth; });
    view.textContent = "";
    order.forEach(function (key) {
      var box = boxes[key];
      var section = el("section", "ns-box ns-depth-" + Math.min(box.depth, 4));
      section.dataset.pidns = box.label;
      section.appendChild(el("h3", "ns-title",
        "pid namespace · " + (box.label === "sandbox" ? "your sandbox" : box.label) + " · " + box.inode));
      var list = el("ul", "ns-processes");
      box.processes.forEach(function (p) {
        var item = el("li", "ns-process");
        item.appendChild(el("span", "ns-pid", String(p.nspid[p.nspid.length - 1])));
        item.appendChild(el("span", "ns-comm", p.command));
        item.title = "pids from your sandbox down: " + p.nspid.join(" → ") + "; on the host: " + p.host_pid;
        OTHERS.forEach(function (ns) {
          var info = p.namespaces[ns];
          if (info && info.is !== "sandbox") item.appendChild(el("span", "ns-tag ns-" + ns, ns + ": " + info.is));
        });
        list.appendChild(item);
      });
      section.appendChild(list);
      view.appendChild(section);
    });
  }

  function refresh() {
    if (!panel.open || document.hidden) return;
    fetch(panel.dataset.url, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (data.error) { view.textContent = data.error; return; }
        render(data);
      })
      .catch(function () { view.textContent = "Could not read your namespaces just now."; });
  }

  panel.addEventListener("toggle", refresh);
  window.setInterval(refresh, EVERY);
})();
