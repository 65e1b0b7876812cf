// What the agent and image pages share: a cost preview (`?dry_run=true`), a job's live panel (per-step
// progress from its event stream, a cancel button, the result and its receipt), and a list of recent jobs.
import { api, ApiError, follow, newKey, postStreaming } from "/ui/api.js";
import { el, errorText, receiptLine, when } from "/ui/dom.js";

const FINAL = ["result", "failed", "canceled"];

// Quote a job-creating POST without holding anything; answers the text shown beside the form.
export async function preview(path, body) {
  try {
    const quote = await api("POST", `${path}?dry_run=true`, body);
    return el("span", { "data-testid": "quote" }, `This would hold ${quote.cost.quoted} credits (prices ${quote.price_version}); nothing is held by a preview.`);
  } catch (error) { return errorText(error); }
}

// A job's live panel: call `panel.handle` with each event; `onEnd(event, data)` once it ended.
export function jobPanel({ onEnd, renderProgress } = {}) {
  const status = el("p", { class: "job-status", "data-testid": "job-status" }, "starting…");
  const bar = el("progress", { max: 100, value: 0, "aria-label": "Progress" });
  const steps = el("ol", { class: "steps", "data-testid": "steps" });
  const held = el("span", { class: "held" });
  const cancel = el("button", { id: "cancel-job", hidden: true }, "Cancel");
  const end = el("div", { class: "job-end" });
  const node = el("section", { class: "card job", "aria-live": "polite" }, el("div", { class: "toolbar" }, status, bar, held, cancel), steps, end);
  const panel = { node, jobId: null };
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try { await api("POST", `/api/v1/jobs/${panel.jobId}/cancel`); status.textContent = "canceling…"; }
    catch (error) { end.append(errorText(error)); cancel.disabled = false; }
  });
  const header = document.getElementById("balance-held");
  let lastStage = null;
  panel.handle = ({ event, data }) => {
    if (event === "queued") {
      panel.jobId = data.job_id;
      node.dataset.job = data.job_id;
      cancel.hidden = false;
      status.textContent = data.queue_position ? `queued (${data.queue_position} ahead)` : "queued";
    }
    const holding = data && !FINAL.includes(event) ? (data.held ?? data.credits_held) : undefined;
    if (holding !== undefined) {
      held.textContent = `${holding} credits held`;
      // A hold publishes no balance event (the job's end does): the header shows it from the job's events.
      header.hidden = false;
      header.textContent = `${holding} held`;
    }
    if (event === "started") status.textContent = "running";
    if (event === "progress") {
      status.textContent = `${data.stage}: step ${data.step} of ${data.total}`;
      if (data.percent !== null && data.percent !== undefined) bar.value = data.percent;
      if (data.stage !== lastStage) { steps.append(el("li", {}, data.stage)); lastStage = data.stage; }
      if (renderProgress) renderProgress(data);
    }
    if (FINAL.includes(event)) {
      cancel.hidden = true;
      held.textContent = "";
      header.hidden = true;
      status.textContent = { result: "succeeded", failed: "failed", canceled: "canceled" }[event];
      status.className = `job-status ${event === "result" ? "ok" : "bad"}`;
      if (event === "result") bar.value = 100;
      if (event === "failed") end.append(el("p", { class: "error" }, (data.error && data.error.message) || "failed"));
      if (onEnd) onEnd(event, data, end);
      end.append(receiptLine(data.receipt) || "");
    }
  };
  return panel;
}

// Start a job: the POST answers its event stream when the route streams, else follow its events URL.
export async function startJob(path, body, panel, { streams = true } = {}) {
  try {
    if (streams) { await postStreaming(path, body, panel.handle, { key: newKey() }); return; }
    const accepted = await api("POST", path, body, { "Idempotency-Key": newKey() });
    panel.handle({ event: "queued", data: { ...accepted, held: accepted.cost.held } });
    await follow(accepted.events_url, panel.handle);
  } catch (error) {
    panel.node.append(errorText(error));
    if (error instanceof ApiError && error.problem && error.problem.limit) panel.node.append(el("p", {}, el("a", { href: "#/preferences" }, "Change your spending limit")));
  }
}

// Re-attach a panel to a job still running (after a refresh or a page switch).
export async function resume(job, panel) {
  panel.handle({ event: "queued", data: { job_id: job.id } });
  try { await follow(`/api/v1/jobs/${job.id}/events`, panel.handle); } catch (error) { panel.node.append(errorText(error)); }
}

// The caller's recent jobs of a kind, newest first, as a table.
export async function recentJobs(kind, describe) {
  const page = await api("GET", `/api/v1/jobs?kind=${kind}&limit=20`);
  if (!page.items.length) return el("p", { class: "empty" }, "Nothing yet.");
  return el("table", { "data-testid": `${kind}-jobs` }, el("thead", {}, el("tr", {}, ["Started", "Status", "Model", "Charged", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, page.items.map((job) => el("tr", { "data-job": job.id }, el("td", {}, when(job.created_at)), el("td", {}, job.status),
      el("td", {}, job.model || ""), el("td", {}, job.cost.charged ?? `${job.cost.held} held`), el("td", {}, describe ? describe(job) : "")))));
}
