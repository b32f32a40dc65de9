// The instructor's live dashboard: the progress table and charts, drawn from progress.json,
// with each cell updated the moment a learner's progress is saved (a websocket per dashboard).
// Every name is set as text, never as HTML: display names are the learners' to choose.
"use strict";

(function () {
  const root = document.querySelector(".dashboard");
  if (!root) return;
  const status = document.getElementById("dash-status");
  const table = document.getElementById("progress-table");
  const progressUrl = root.dataset.progressUrl;
  const SYMBOL = { passed: "✓", failed: "✗", in_progress: "…", not_started: "" };
  const WORDS = {
    passed: "passed",
    failed: "checked, not passed yet",
    in_progress: "working on it",
    not_started: "not started",
  };
  let data = null;
  let refetchTimer = null;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function describe(name, step, cell) {
    let text = `${name}, exercise ${step.label}: ${WORDS[cell.state]}`;
    if (cell.attempts) text += `, ${cell.attempts} attempt${cell.attempts === 1 ? "" : "s"}`;
    if (cell.hints) text += `, ${cell.hints} hint${cell.hints === 1 ? "" : "s"}`;
    if (cell.minutes !== null) text += `, ${cell.minutes} min`;
    return text;
  }

  function fillCell(td, name, step, cell) {
    td.className = `cell-${cell.state}`;
    td.dataset.state = cell.state;
    let text = SYMBOL[cell.state];
    if (cell.state === "failed") text += cell.attempts;
    if (cell.hints) text += ` ·${cell.hints}h`;
    td.textContent = text;
    td.title = describe(name, step, cell);
    td.setAttribute("aria-label", td.title);
  }

  function postButton(action, label, fields) {
    const form = el("form", { method: "post", action });
    form.append(el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: root.dataset.csrf }));
    for (const [name, value] of Object.entries(fields || {})) {
      form.append(el("input", { type: "hidden", name, value }));
    }
    form.append(el("button", { type: "submit", class: "button button-small button-quiet" }, label));
    return form;
  }

  function memberActions(member) {
    const base = `/classrooms/${root.dataset.classroom}`;
    const menu = el("details", { class: "member-actions" });
    menu.append(el("summary", { "aria-label": `Actions for ${member.name}` }, "⋯"));
    const box = el("div", { class: "member-actions-box" });
    box.append(
      el("a", { class: "button button-small", href: `${base}/watch/${member.id}/` }, "Watch terminal"),
      el("a", { class: "button button-small button-quiet", href: `${base}/members/${member.id}/recordings/` }, "Recorded sessions"),
      postButton(`${base}/members/${member.id}/reset`, "Reset sandbox, keep files", { keep_files: "yes" }),
      postButton(`${base}/members/${member.id}/reset`, "Reset to a clean sandbox", { keep_files: "no" }),
      postButton(`${base}/members/${member.id}/extend`, "15 more minutes"),
    );
    menu.append(box);
    return menu;
  }

  function drawTable() {
    // A redraw must not close the menu the instructor has open.
    const openMenu = table.querySelector("details.member-actions[open]");
    const openFor = openMenu && openMenu.closest("tr").dataset.member;
    table.replaceChildren(table.querySelector("caption"));
    const head = el("thead");
    const headRow = el("tr");
    headRow.append(el("th", { scope: "col" }, "Learner"));
    for (const step of data.steps) headRow.append(el("th", { scope: "col", title: step.title }, step.label));
    head.append(headRow);
    const body = el("tbody");
    if (!data.members.length) {
      const row = el("tr");
      row.append(el("td", { colspan: String(data.steps.length + 1), class: "meta" }, "Nobody has joined yet."));
      body.append(row);
    }
    for (const member of data.members) {
      const row = el("tr", { "data-member": String(member.id) });
      const who = el("th", { scope: "row" });
      who.append(el("span", { class: "member-name" }, member.name));
      if (member.idle) who.append(el("span", { class: "tag" }, "idle"));
      who.append(memberActions(member));
      row.append(who);
      for (const step of data.steps) {
        const td = el("td", { "data-step": String(step.id) });
        fillCell(td, member.name, step, member.cells[String(step.id)]);
        row.append(td);
      }
      body.append(row);
    }
    table.append(head, body);
    if (openFor) {
      const menu = table.querySelector(`tr[data-member="${openFor}"] details.member-actions`);
      if (menu) menu.open = true;
    }
  }

  function drawBars(target, values, max, unit) {
    const box = document.getElementById(target);
    box.replaceChildren();
    data.steps.forEach((step, i) => {
      const value = values[i];
      const bar = el("div", { class: "bar-row" });
      bar.append(el("span", { class: "bar-label", title: step.title }, step.label));
      const track = el("span", { class: "bar-track" });
      const fill = el("span", { class: "bar-fill" });
      fill.style.width = `${max ? Math.round(((value || 0) / max) * 100) : 0}%`;
      track.append(fill);
      bar.append(track, el("span", { class: "bar-value" }, value === null ? "–" : `${value}${unit}`));
      box.append(bar);
    });
  }

  function drawSummary() {
    const perStep = data.summary.steps;
    drawBars("chart-completion", perStep.map((s) => s.passed), Math.max(1, data.members.length), "");
    const minutes = perStep.map((s) => s.median_minutes);
    drawBars("chart-time", minutes, Math.max(1, ...minutes.filter((m) => m !== null)), " min");
    const stuck = data.summary.stuck;
    const step = stuck && data.steps.find((s) => s.id === stuck.step);
    document.getElementById("stuck").textContent = stuck
      ? `Stuck longest: ${stuck.name} on ${step.label} (${step.title}), ${stuck.minutes} min.`
      : "";
  }

  async function refetch() {
    try {
      const response = await fetch(progressUrl, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      data = await response.json();
      drawTable();
      drawSummary();
    } catch (error) {
      status.textContent = `Could not load progress (${error.message}); retrying.`;
    }
  }

  function refetchSoon() {
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(refetch, 1000);
  }

  function applyCell(event) {
    const row = table.querySelector(`tr[data-member="${event.member}"]`);
    const td = row && row.querySelector(`td[data-step="${event.step}"]`);
    const step = data && data.steps.find((s) => s.id === event.step);
    if (!td || !step) return refetch();
    fillCell(td, row.querySelector(".member-name").textContent, step, event.cell);
    refetchSoon(); // the charts, the idle tags and who is stuck follow
  }

  let delay = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/classrooms/${root.dataset.classroom}/dashboard/`);
    socket.onopen = () => {
      delay = 500;
      status.textContent = "Live";
      refetch();
    };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.event === "cell") applyCell(event);
      else if (event.event === "joined") refetch();
    };
    socket.onclose = (closed) => {
      if (closed.code === 4403) {
        status.textContent = "This dashboard is not yours to watch.";
        return;
      }
      status.textContent = "Reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  // A click that stops every sandbox of the class asks first.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });

  refetch().then(connect);
  setInterval(refetch, 30000); // idle tags and minutes move on with the clock
})();
