// Webhooks: the caller's endpoints (create, secret shown once, rotate, test, re-enable, remove) and the
// delivery log with replay. The routes are a signed-in user's own (API keys are refused there).
import { api } from "/ui/api.js";
import { el, errorText, show, when } from "/ui/dom.js";

const EVENTS = ["job.succeeded", "job.failed", "job.canceled", "balance.low", "balance.recovered", "payment.succeeded"];

function secretNote(title, secret) {
  return el("p", { class: "card", role: "status" }, `${title} Copy it now, it is shown once: `, el("code", { id: "webhook-secret" }, secret));
}

async function deliveries(out) {
  const page = await api("GET", "/api/v1/webhooks/deliveries?limit=50");
  if (!page.items.length) return el("p", { class: "empty" }, "No deliveries yet.");
  return el("table", { id: "deliveries" }, el("thead", {}, el("tr", {}, ["When", "Event", "Endpoint", "Status", "Attempts", "Answer", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, page.items.map((d) => el("tr", { "data-delivery": d.id }, el("td", {}, when(d.created_at)), el("td", {}, d.event_type),
      el("td", {}, el("code", {}, d.endpoint_id)), el("td", {}, d.status), el("td", {}, d.attempts),
      el("td", {}, d.response_status ? `HTTP ${d.response_status}` : d.error || ""),
      el("td", {}, el("button", { on: { click: async () => {
        try { await api("POST", `/api/v1/webhooks/deliveries/${d.id}/replay`); webhooksPage(); } catch (error) { out.replaceChildren(errorText(error)); }
      } } }, "Replay"))))));
}

export async function webhooksPage(note) {
  const out = el("div", { id: "webhook-out" }, note || "");
  let list;
  try { list = await api("GET", "/api/v1/webhooks"); } catch (error) {
    show(el("h1", {}, "Webhooks"), errorText(error));
    return;
  }
  const url = el("input", { id: "webhook-url", type: "url", size: 40, placeholder: "https://example.com/hooks/creditflow", "aria-label": "Endpoint URL" });
  const boxes = EVENTS.map((name) => el("label", {}, el("input", { type: "checkbox", value: name, checked: name.startsWith("job.") }), ` ${name}`));
  const act = (path, then) => async () => {
    try { const answer = await api("POST", path); webhooksPage(then ? then(answer) : null); } catch (error) { out.replaceChildren(errorText(error)); }
  };
  const rows = list.items.map((w) => el("tr", { "data-webhook": w.id }, el("td", {}, el("code", {}, w.url)), el("td", {}, w.events.join(", ")),
    el("td", {}, w.status, w.disabled_reason ? ` (${w.disabled_reason})` : ""), el("td", {}, when(w.created_at)),
    el("td", {},
      el("button", { on: { click: act(`/api/v1/webhooks/${w.id}/rotate`, (r) => secretNote(`New secret (the old one signs beside it until ${when(r.previous_valid_until)}).`, r.secret)) } }, "Rotate secret"), " ",
      el("button", { on: { click: act(`/api/v1/webhooks/${w.id}/test`, () => el("p", { role: "status" }, "Test notification queued.")) } }, "Send test"), " ",
      w.status === "disabled" ? el("button", { on: { click: act(`/api/v1/webhooks/${w.id}/enable`) } }, "Enable") : null, " ",
      el("button", { on: { click: async () => { await api("DELETE", `/api/v1/webhooks/${w.id}`).catch(() => {}); webhooksPage(); } } }, "Remove"))));
  show(el("h1", {}, "Webhooks"),
    el("p", { class: "muted" }, "Signed Standard Webhooks deliveries; an endpoint whose deliveries all fail for days is disabled and you are told."),
    el("section", { class: "card" }, el("div", { class: "toolbar" }, url, el("button", { class: "primary", id: "webhook-create", on: { click: async () => {
      const events = boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value);
      try { const made = await api("POST", "/api/v1/webhooks", { url: url.value.trim(), events }); webhooksPage(secretNote("Endpoint added.", made.secret)); }
      catch (error) { out.replaceChildren(errorText(error)); }
    } } }, "Add endpoint")), el("div", { class: "toolbar" }, boxes)),
    out,
    rows.length ? el("table", { id: "webhooks" }, el("thead", {}, el("tr", {}, ["URL", "Events", "Status", "Added", ""].map((h) => el("th", {}, h)))), el("tbody", {}, rows))
      : el("p", { class: "empty" }, "No endpoints."),
    el("h2", {}, "Deliveries"), await deliveries(out));
}
