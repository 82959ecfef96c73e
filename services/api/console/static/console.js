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
        .then((html) => { live.innerHTML = html; })
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

  function start() { startList(); startWorkflow(); }
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
