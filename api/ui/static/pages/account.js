// Account pages: API keys (the secret shown once), buying credits on each rail, and the admin page.
import { api } from "/ui/api.js";
import { el, errorText, main, show } from "/ui/dom.js";

// --- API keys ----------------------------------------------------------------------------------------
export async function keysPage(made) {
  const keys = await api("GET", "/api/v1/api-keys");
  const name = el("input", { id: "key-name", placeholder: "Key name", "aria-label": "Key name" });
  show(el("h1", {}, "API keys"),
    made ? el("p", { class: "card", role: "status" }, "Copy it now, it is shown once: ", el("code", { id: "new-key" }, made.key)) : null,
    el("div", { class: "toolbar" }, name, el("button", { class: "primary", on: { click: async () => {
      try { keysPage(await api("POST", "/api/v1/api-keys", { name: name.value || "key" })); } catch (error) { main.append(errorText(error)); }
    } } }, "Create key")),
    (keys.items || []).length ? el("table", {}, el("tbody", {}, keys.items.map((k) => el("tr", {}, el("td", {}, k.name), el("td", {}, el("code", {}, k.prefix)),
      el("td", {}, k.last_used_at ? `used ${new Date(k.last_used_at).toLocaleString()}` : "never used"),
      el("td", {}, el("button", { on: { click: async () => { await api("DELETE", `/api/v1/api-keys/${k.id}`); keysPage(); } } }, "Revoke"))))))
      : el("p", { class: "empty" }, "No API keys."));
}

// --- buy credits -------------------------------------------------------------------------------------
export async function buyPage(state) {
  const packs = await api("GET", "/api/v1/payments/packs");
  const rails = (state.config && state.config.rails) || [];
  const outcome = el("div", { id: "buy-outcome" });
  const buy = async (rail, pack) => {
    try {
      if (rail === "stripe") location.href = (await api("POST", "/api/v1/payments/stripe/checkout-sessions", { pack_id: pack.id })).url;
      if (rail === "paypal") {
        const order = await api("POST", "/api/v1/payments/paypal/orders", { pack_id: pack.id });
        const approve = (order.links || []).find((l) => l.rel === "approve" || l.rel === "payer-action");
        if (approve) location.href = approve.href; else outcome.replaceChildren(el("p", {}, `PayPal order ${order.id} created.`));
      }
      if (rail === "crypto") {
        const intent = await api("POST", "/api/v1/payments/crypto/intents", { pack_id: pack.id, chain_id: 1 });
        outcome.replaceChildren(el("p", { class: "card" }, `Send ${intent.amount_wei} wei to `, el("code", {}, intent.deposit_address), ` before ${intent.expires_at}.`));
      }
    } catch (error) { outcome.replaceChildren(errorText(error)); }
  };
  show(el("h1", {}, "Buy credits"), el("table", {}, el("tbody", {}, (packs.items || packs).map((pack) => el("tr", {},
    el("td", {}, `${pack.credits} credits`), el("td", {}, `${pack.price} ${pack.currency}`),
    el("td", {}, rails.map((r) => el("button", { disabled: !r.enabled, title: r.enabled ? "" : `${r.rail} is not configured here`,
      on: { click: () => buy(r.rail, pack) } }, r.enabled ? `Pay with ${r.rail}` : `${r.rail}: not available`))))))), outcome);
}

// --- admin -------------------------------------------------------------------------------------------
export async function adminPage() {
  const query = el("input", { id: "admin-q", placeholder: "Search users", "aria-label": "Search users" });
  const results = el("div", {});
  const search = async () => {
    try {
      const users = await api("GET", `/api/v1/admin/users?q=${encodeURIComponent(query.value)}`);
      results.replaceChildren(el("table", {}, el("tbody", {}, (users.items || []).map((u) => el("tr", {}, el("td", {}, u.external_id), el("td", {}, u.id),
        el("td", {}, u.balance ? u.balance.available : ""))))));
    } catch (error) { results.replaceChildren(errorText(error)); }
  };
  const verifyOut = el("span", {});
  show(el("h1", {}, "Admin"), el("div", { class: "toolbar" }, query, el("button", { on: { click: search } }, "Search")), results,
    el("section", { class: "card" }, el("h2", {}, "Ledger"), el("button", { on: { click: async () => {
      try { const r = await api("GET", "/api/v1/admin/ledger/verify"); verifyOut.textContent = r.ok ? `ok: ${r.entries_checked} entries` : `first bad entry ${r.first_bad_entry}`; }
      catch (error) { verifyOut.textContent = error.message; }
    } } }, "Verify the whole ledger"), " ", verifyOut),
    el("section", { class: "card" }, el("h2", {}, "Reports and audit"), el("p", {},
      el("a", { href: "/api/docs" }, "Usage and revenue reports, dead letters and the audit log"), " are in the API (JSON, CSV).")));
  search();
}

