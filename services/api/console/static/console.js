// kflow console: live updates over server-sent events. The pages work without this file
// (everything is rendered by the server); it only keeps them current.
(function () {
  "use strict";
  const TERMINAL = new Set(["WorkflowCompleted", "WorkflowFailed", "WorkflowCancelled"]);

  function fragment(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  // a stream whose API key was revoked ends with "unauthorized": stop, and let the server
  // send the browser to the sign-in page
  function onUnauthorized(source) {
    source.close();
    window.location.reload();
  }

  // ---- the workflow list -------------------------------------------------------------
  let listSource = null;
  function startList() {
    const list = document.getElementById("wf-list");
    if (listSource) { listSource.close(); listSource = null; }
    if (!list || !window.EventSource) return;
    const state = document.getElementById("live-state");
    const firstPage = list.dataset.firstPage === "1";
    listSource = new EventSource(list.dataset.live);
    listSource.onopen = () => { if (state) state.textContent = "Live: new runs and status changes appear here."; };
    listSource.onerror = () => { if (state) state.textContent = "Live updates interrupted; reconnecting…"; };
    listSource.addEventListener("row", (ev) => {
      const row = fragment(ev.data);
      const old = document.getElementById(row.id);
      if (old) { old.replaceWith(row); }
      else if (firstPage) {
        document.getElementById("wf-rows").prepend(row);
        const empty = document.getElementById("wf-empty");
        if (empty) empty.remove();
      } else { return; }
      row.classList.add("flash");
    });
    listSource.addEventListener("drop", (ev) => {
      const old = document.getElementById("wf-" + ev.data);
      if (old) old.remove();
    });
    listSource.addEventListener("counts", (ev) => {
      const old = document.getElementById("counts");
      if (old) old.replaceWith(fragment(ev.data));
    });
    listSource.addEventListener("reload", () => { reloadList(list); });
    listSource.addEventListener("unauthorized", () => { onUnauthorized(listSource); });
  }
  function reloadList(list) {
    fetch(window.location.href, { credentials: "same-origin" })
      .then((r) => r.text())
      .then((html) => {
        const doc = new DOMParser().parseFromString(html, "text/html");
        const fresh = doc.getElementById("wf-list");
        if (fresh) { list.replaceWith(fresh); startList(); }
      });
  }

  // ---- one workflow --------------------------------------------------------------------
  let wfSource = null;
  function startWorkflow() {
    const live = document.getElementById("wf-live");
    if (wfSource) { wfSource.close(); wfSource = null; }
    if (!live || !window.EventSource || live.dataset.final === "1") return;
    let timer = null;
    let busy = false;
    const refresh = () => {
      timer = null;
      if (busy) { timer = setTimeout(refresh, 300); return; }
      busy = true;
      fetch(live.dataset.part, { credentials: "same-origin", headers: { "HX-Request": "true" } })
        .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
        .then((html) => {
          const views = ["dag-view", "timeline-view"].map((id) => document.getElementById(id));
          const kept = views.map((v) => (v ? [v.scrollLeft, v.scrollTop] : null));
          live.innerHTML = html;
          drawCanvases();
          ["dag-view", "timeline-view"].forEach((id, i) => {
            const v = document.getElementById(id);
            if (v && kept[i]) { v.scrollLeft = kept[i][0]; v.scrollTop = kept[i][1]; }
          });
        })
        .catch(() => {})
        .finally(() => { busy = false; });
    };
    wfSource = new EventSource(live.dataset.stream + "?after=" + encodeURIComponent(live.dataset.seq || "0"));
    wfSource.onmessage = null;
    wfSource.addEventListener("unauthorized", () => { onUnauthorized(wfSource); });
    const onEvent = (ev) => {
      if (!timer) timer = setTimeout(refresh, 250);
      if (TERMINAL.has(ev.type)) { wfSource.close(); wfSource = null; setTimeout(refresh, 600); }
    };
    // the stream names each message after its event type
    ["WorkflowStarted", "WorkflowPaused", "WorkflowResumed", "WorkflowSignalled", "WorkflowCompleted",
     "WorkflowFailed", "WorkflowCancelled", "StepScheduled", "MapExpanded", "StepSucceeded",
     "StepRetryScheduled", "StepRetryDue", "StepFailed", "StepAwaitingReview", "StepTimedOut",
     "StepHeartbeatRecorded", "StepSkipped", "StepCancelled", "WorkflowRetried",
     "StepReopened"].forEach((t) => wfSource.addEventListener(t, onEvent));
  }


  // ---- large graphs and timelines: compact JSON drawn on a viewport-sized canvas -------
  const FILL = { succeeded: ["#bbf7d0", "#16a34a"], running: ["#bfdbfe", "#2563eb"], waiting: ["#fde68a", "#d97706"],
    review: ["#fde68a", "#d97706"], backoff: ["#fde68a", "#d97706"], failed: ["#fecaca", "#dc2626"],
    cancelled: ["#e5e7eb", "#4b5563"], skipped: ["#f3f4f6", "#d1d5db"] };
  const BAR = { run: "#3b82f6", wait: "#f59e0b", backoff: "#fcd34d", map: "#a5b4fc", skipped: "#d1d5db" };
  let tip = null;
  function showTip(ev, text) {
    if (!tip) { tip = document.createElement("div"); tip.className = "canvas-tip"; tip.id = "canvas-tip"; document.body.appendChild(tip); }
    tip.hidden = !text;
    if (text) { tip.textContent = text; tip.style.left = ev.clientX + 12 + "px"; tip.style.top = ev.clientY + 12 + "px"; }
  }
  // one scrollable view: a sizer as large as the drawing, the canvas kept over the visible part
  function canvasView(viewId, dataId, paint, hit, click) {
    const view = document.getElementById(viewId), script = document.getElementById(dataId);
    if (!view || !script) return;
    const data = JSON.parse(script.textContent), cv = view.querySelector("canvas");
    const sizer = document.createElement("div");
    sizer.className = "sizer"; sizer.style.width = data.w + "px"; sizer.style.height = data.h + "px";
    view.appendChild(sizer);
    let queued = false;
    const draw = () => {
      queued = false;
      const dpr = window.devicePixelRatio || 1, w = view.clientWidth, h = view.clientHeight;
      cv.style.left = view.scrollLeft + "px"; cv.style.top = view.scrollTop + "px";
      cv.style.width = w + "px"; cv.style.height = h + "px";
      cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
      const g = cv.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, -view.scrollLeft * dpr, -view.scrollTop * dpr);
      paint(g, data, view.scrollLeft, view.scrollTop, w, h);
      cv.dataset.drawn = String(performance.now());
    };
    view.redraw = () => { if (!queued) { queued = true; requestAnimationFrame(draw); } };
    view.addEventListener("scroll", view.redraw);
    window.addEventListener("resize", view.redraw);
    const at = (ev) => { const r = view.getBoundingClientRect(); return [ev.clientX - r.left + view.scrollLeft, ev.clientY - r.top + view.scrollTop]; };
    let drag = null;
    view.addEventListener("pointerdown", (ev) => { drag = [ev.clientX, ev.clientY, view.scrollLeft, view.scrollTop, false]; });
    view.addEventListener("pointermove", (ev) => {
      if (drag && ev.buttons) {
        if (Math.abs(ev.clientX - drag[0]) + Math.abs(ev.clientY - drag[1]) > 3) drag[4] = true;
        view.scrollLeft = drag[2] - (ev.clientX - drag[0]); view.scrollTop = drag[3] - (ev.clientY - drag[1]);
      }
      const found = hit(data, ...at(ev));
      showTip(ev, found);
    });
    view.addEventListener("pointerleave", (ev) => showTip(ev, ""));
    view.addEventListener("pointerup", (ev) => { const moved = drag && drag[4]; drag = null; if (!moved && click) click(data, ...at(ev), view); });
    draw();
  }
  const nodeAt = (d, x, y) => d.nodes.find((n) => x >= n[1] && x <= n[1] + d.nw && y >= n[2] && y <= n[2] + d.nh);
  function paintDag(g, d, x0, y0, w, h) {
    g.font = "12px system-ui, sans-serif";
    g.lineWidth = 1.4;
    for (const e of d.edges) {
      const s = d.nodes[e[0]], t = d.nodes[e[1]];
      const x1 = s[1] + d.nw, y1 = s[2] + d.nh / 2, x2 = t[1], y2 = t[2] + d.nh / 2, mid = (x1 + x2) / 2;
      if (Math.max(x1, x2) < x0 || Math.min(x1, x2) > x0 + w || Math.max(y1, y2) < y0 || Math.min(y1, y2) > y0 + h) continue;
      g.strokeStyle = e[2] ? "#d1d5db" : "#94a3b8";
      g.beginPath(); g.moveTo(x1, y1); g.bezierCurveTo(mid, y1, mid, y2, x2, y2); g.stroke();
    }
    g.lineWidth = 1;
    for (const n of d.nodes) {
      if (n[1] > x0 + w || n[1] + d.nw < x0 || n[2] > y0 + h || n[2] + d.nh < y0) continue;
      const c = FILL[n[3]] || ["#fff", "#cbd5e1"];
      g.fillStyle = c[0]; g.strokeStyle = n[0] === d.selected ? "#111827" : c[1];
      g.lineWidth = n[0] === d.selected ? 3 : 1;
      g.beginPath(); g.roundRect(n[1], n[2], d.nw, d.nh, 6); g.fill(); g.stroke();
      g.fillStyle = n[3] === "skipped" ? "#9ca3af" : "#111827";
      g.font = "12px system-ui, sans-serif"; g.fillText(n[0].length > 22 ? n[0].slice(0, 21) + "…" : n[0], n[1] + 8, n[2] + 16, d.nw - 12);
      g.font = "10px system-ui, sans-serif"; g.fillText(n[4], n[1] + 8, n[2] + 32, d.nw - 12);
    }
  }
  function selectNode(d, x, y, view) {
    const n = nodeAt(d, x, y);
    if (!n) return;
    d.selected = n[0]; view.dataset.selected = n[0]; view.redraw();
    const out = document.getElementById("dag-selected");
    if (out) {
      out.textContent = n[0] + ": " + n[4] + " ";
      const a = document.createElement("a");
      a.className = "io-link"; a.textContent = "input / output";
      a.href = view.dataset.steps + encodeURIComponent(view.dataset.workflow + "/" + n[0]);
      out.appendChild(a);
    }
    document.querySelectorAll("#steps tr.selected").forEach((r) => r.classList.remove("selected"));
    const row = document.querySelector("#steps tr[data-step='" + CSS.escape(n[0]) + "']");
    if (row) row.classList.add("selected");
  }
  function paintTimeline(g, d, x0, y0, w, h) {
    g.font = "10px system-ui, sans-serif"; g.fillStyle = "#6b7280"; g.strokeStyle = "#f1f5f9";
    for (const [x, label] of d.ticks) { g.fillText(label, x, y0 + 12); g.beginPath(); g.moveTo(x, y0 + 14); g.lineTo(x, y0 + h); g.stroke(); }
    g.font = "11px system-ui, sans-serif"; g.fillStyle = "#374151";
    for (const [y, label] of d.lanes) { if (y > y0 + 16 && y < y0 + h + d.lane_h) g.fillText(label, 4, y, 210); }
    for (const b of d.bars) {
      if (b[1] + 12 < y0 + 14 || b[1] > y0 + h || b[0] > x0 + w || b[0] + b[2] < x0) continue;
      g.fillStyle = b[4] === "failed" || b[4] === "timed out" ? "#ef4444" : b[4] === "cancelled" ? "#9ca3af" : BAR[b[3]] || "#3b82f6";
      g.fillRect(b[0], b[1], b[2], 12);
    }
  }
  const barAt = (d, x, y) => { const b = d.bars.find((b) => x >= b[0] - 1 && x <= b[0] + b[2] + 1 && y >= b[1] && y <= b[1] + 12); return b ? b[5] : ""; };
  function drawCanvases() {
    canvasView("dag-view", "dag-data", paintDag, (d, x, y) => { const n = nodeAt(d, x, y); return n ? n[0] + ": " + n[4] : ""; }, selectNode);
    canvasView("timeline-view", "timeline-data", paintTimeline, barAt, null);
  }

  // a step's input and output load into its row when asked for (the link alone opens them)
  document.addEventListener("click", (ev) => {
    const link = ev.target.closest && ev.target.closest("a.io-link");
    if (!link) return;
    ev.preventDefault();
    const cell = link.parentElement;
    fetch(link.href, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then((r) => r.text())
      .then((html) => { cell.innerHTML = html; });
  });

  function start() { drawCanvases(); startList(); startWorkflow(); }
  document.addEventListener("DOMContentLoaded", start);
  // the filter form swaps #wf-list with htmx: follow the new filters
  document.addEventListener("htmx:afterSwap", (ev) => {
    if (ev.detail && ev.detail.target && ev.detail.target.id === "wf-list") startList();
  });
  // an accepted retry reopens the run: follow it live again
  document.addEventListener("htmx:afterSwap", (ev) => {
    const target = ev.detail && ev.detail.target;
    if (!target || target.id !== "outcome") return;
    const caused = target.querySelector("[data-reopened='1']");
    const live = document.getElementById("wf-live");
    if (caused && live) { live.dataset.final = "0"; live.dataset.seq = caused.dataset.before || "0"; startWorkflow(); }
  });
  document.addEventListener("htmx:afterSettle", () => {
    const list = document.getElementById("wf-list");
    if (list && listSource && !list.isConnected) startList();
  });
})();
