// Preferences: the default chat model, the cost mode, low-balance warnings, and the personal spending
// limit the API enforces when it places a job's hold (a job past it is refused, nothing held).
import { api } from "/ui/api.js";
import { el, errorText, show } from "/ui/dom.js";

export async function preferencesPage(state) {
  const me = await api("GET", "/api/v1/me");
  const p = me.preferences;
  const model = el("select", { id: "pref-model", "aria-label": "Default chat model" },
    el("option", { value: "" }, "(let creditflow choose)"),
    state.models.map((m) => el("option", { value: m.id, selected: m.id === p.default_chat_model }, m.id)));
  const mode = el("select", { id: "pref-cost-mode", "aria-label": "Cost mode" },
    ["cheapest", "balanced", "best"].map((m) => el("option", { value: m, selected: m === p.cost_mode }, m)));
  const thresholds = [].concat(p.low_balance_threshold ?? []);
  const low = el("input", { id: "pref-low", "aria-label": "Low-balance warnings", placeholder: "e.g. 50, 10", value: thresholds.join(", ") });
  const limit = el("input", { id: "pref-limit", type: "number", min: "0.000001", step: "any", "aria-label": "Spending limit", value: p.spending_limit ?? "" });
  const period = el("select", { id: "pref-period", "aria-label": "Limit period" },
    ["day", "month"].map((v) => el("option", { value: v, selected: v === p.spending_limit_period }, `per ${v} (UTC)`)));
  const out = el("div", { id: "pref-out", role: "status" });
  const save = async () => {
    const lows = low.value.split(",").map((x) => x.trim()).filter(Boolean);
    const changes = {
      default_chat_model: model.value || null,
      cost_mode: mode.value,
      low_balance_threshold: lows.length === 0 ? null : lows.length === 1 ? lows[0] : lows,
      spending_limit: limit.value.trim() || null,
      spending_limit_period: period.value,
    };
    try {
      const saved = await api("PATCH", "/api/v1/me/preferences", changes);
      if (saved.default_chat_model) state.model = saved.default_chat_model;
      out.replaceChildren(el("p", { class: "ok" }, saved.spending_limit
        ? `Saved. Jobs stop at ${saved.spending_limit} credits per ${saved.spending_limit_period}.` : "Saved. No spending limit."));
    } catch (error) { out.replaceChildren(errorText(error)); }
  };
  show(el("h1", {}, "Preferences"),
    el("section", { class: "card" }, el("h2", {}, "Models"),
      el("p", {}, el("label", {}, "Default chat model ", model)), el("p", {}, el("label", {}, "Cost mode ", mode))),
    el("section", { class: "card" }, el("h2", {}, "Spending"),
      el("p", {}, el("label", {}, "Spend at most ", limit, " credits "), period),
      el("p", { class: "muted" }, "Enforced by the API when a job's hold is placed: a chat reply, agent task or image past it is refused and nothing is held. Empty: no limit."),
      el("p", {}, el("label", {}, "Warn me when my balance falls below ", low, " credits"))),
    el("button", { class: "primary", id: "pref-save", on: { click: save } }, "Save"), out);
}
