// Agent tasks: research, code and analysis jobs capped by max_credits, with a cost preview, per-step
// progress, a cancel button, and the result and receipt.
import { api } from "/ui/api.js";
import { el, show } from "/ui/dom.js";
import { jobPanel, preview, recentJobs, resume, startJob } from "/ui/pages/jobs.js";

const PATH = "/api/v1/agent-tasks";
const RESULT_TEXT = ["answer", "report", "summary", "code", "output", "analysis"];

function resultView(result) {
  if (!result) return null;
  const text = RESULT_TEXT.filter((name) => result[name]).map((name) => el("div", {}, el("strong", {}, name), el("pre", {}, String(result[name]))));
  const lines = (result.cost_lines || []).map((line) => el("tr", {}, el("td", {}, line.node || line.step || ""), el("td", {}, line.cost)));
  return el("div", { "data-testid": "agent-result" }, result.stopped ? el("p", { class: "muted" }, `stopped: ${result.stopped}`) : null, text,
    lines.length ? el("table", { class: "cost-lines" }, el("tbody", {}, lines)) : null);
}

export async function agentsPage(state) {
  const kind = el("select", { id: "agent-kind", "aria-label": "Kind" }, ["research", "code", "analysis"].map((k) => el("option", { value: k }, k)));
  const prompt = el("textarea", { id: "agent-prompt", rows: 3, "aria-label": "Task", placeholder: "What should the agent do?" });
  const data = el("textarea", { id: "agent-data", rows: 3, "aria-label": "Data", placeholder: "analysis only: CSV with a header row, or JSON records", hidden: true });
  const max = el("input", { id: "agent-max", type: "number", min: "0.000001", step: "any", value: "5", "aria-label": "Max credits" });
  const model = el("select", { id: "agent-model", "aria-label": "Model" }, state.models.map((m) => el("option", { value: m.id, selected: m.id === state.model }, m.id)));
  const quote = el("div", { id: "agent-quote", class: "muted" });
  const live = el("div", { id: "agent-live" });
  const body = () => ({ kind: kind.value, prompt: prompt.value, max_credits: max.value, model: model.value, ...(kind.value === "analysis" ? { data: data.value } : {}) });
  kind.addEventListener("change", () => { data.hidden = kind.value !== "analysis"; });
  const history = el("div", {}, await recentJobs("agent"));
  const refresh = async () => history.replaceChildren(await recentJobs("agent"));
  const panelFor = () => jobPanel({ onEnd: (event, data, out) => { out.append(resultView(data.result) || ""); refresh(); } });
  show(el("h1", {}, "Agent tasks"),
    el("section", { class: "card" }, el("div", { class: "toolbar" }, el("label", {}, "Kind ", kind), el("label", {}, "Model ", model),
      el("label", {}, "At most ", max, " credits")), prompt, data,
    el("div", { class: "toolbar" },
      el("button", { id: "agent-preview", on: { click: async () => quote.replaceChildren(await preview(PATH, body())) } }, "Preview cost"),
      el("button", { class: "primary", id: "agent-start", on: { click: async () => {
        const panel = panelFor();
        live.replaceChildren(panel.node);
        await startJob(PATH, body(), panel);
      } } }, "Start task"), quote)),
    live, el("h2", {}, "Recent tasks"), history);
  // A task still running when the page was left: follow it again.
  const open = await api("GET", "/api/v1/jobs?kind=agent&status=running&limit=1").catch(() => null);
  if (open && open.items[0]) { const panel = panelFor(); live.replaceChildren(panel.node); await resume(open.items[0], panel); }
}
