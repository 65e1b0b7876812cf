// The web application: sign in, chat with streaming replies and receipts, the live balance, transactions
// with in-browser proof checks, API keys, buying credits, admin. Pages route by the URL fragment.
import { api, ApiError, follow, newKey, postStreaming, setToken, token } from "/ui/api.js";
import { credits, el, errorText, receiptLine, short, show } from "/ui/dom.js";
import { verifyProof } from "/ui/verify.js";
import { adminPage, buyPage, keysPage } from "/ui/pages/account.js";
import { agentsPage } from "/ui/pages/agents.js";
import { imagesPage } from "/ui/pages/images.js";
import { preferencesPage } from "/ui/pages/preferences.js";
import { webhooksPage } from "/ui/pages/webhooks.js";

const RUNNING_KEY = "creditflow.running";  // the reply in progress: survives a refresh
const state = { me: null, config: null, models: [], model: null, balance: null, held: 0, pack: null, averages: {} };

// --- balance -----------------------------------------------------------------------------------------
function renderBalance() {
  const b = state.balance;
  if (!b) return;
  document.getElementById("balance-credits").textContent = b.available;
  const money = document.getElementById("balance-money");
  money.textContent = state.pack ? `≈ ${(credits(b.available) * state.pack.perCredit).toFixed(2)} ${state.pack.currency}` : "";
  const held = document.getElementById("balance-held");
  held.hidden = !(credits(b.held) > 0);
  held.textContent = `${b.held} held`;
  const average = state.averages[state.model];
  document.getElementById("balance-replies").textContent =
    average ? `about ${Math.floor(credits(b.available) / average)} replies left at ${state.model}` : "";
}

async function loadAverages() {
  // The chosen model's recent average charge per reply, from the caller's own finished chat jobs.
  try {
    const jobs = await api("GET", "/api/v1/jobs?kind=chat&status=succeeded&limit=50");
    const by = {};
    for (const job of jobs.items) (by[job.model] ||= []).push(credits(job.cost.charged || "0"));
    for (const [model, list] of Object.entries(by)) state.averages[model] = list.reduce((a, b) => a + b, 0) / list.length || 0;
  } catch { /* the balance shows without it */ }
  renderBalance();
}

async function watchBalance() {
  // Reconnects after a drop; /me/events starts from now and carries every balance change.
  for (;;) {
    try {
      await follow("/api/v1/me/events", ({ event, data }) => {
        if (event === "balance") {
          state.balance = { available: data.available, held: data.held, posted: data.posted };
          renderBalance();
        }
      });
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// --- sign in -----------------------------------------------------------------------------------------
function signInPage(problem) {
  const config = state.config || {};
  const name = el("input", { id: "dev-name", value: "alice", "aria-label": "Name", pattern: "[A-Za-z0-9_.-]{1,40}" });
  const admin = el("input", { type: "checkbox", id: "dev-admin" });
  const pasted = el("textarea", { id: "token", rows: 3, placeholder: "A creditflow JWT, an OIDC ID token or an API key" });
  const dev = config.dev_sign_in
    ? el("section", { class: "card" }, el("h2", {}, "Development sign-in"),
      el("p", { class: "muted" }, "Offered on a development stack with its embedded default secret only."),
      el("label", {}, "Name ", name), " ", el("label", {}, admin, " admin"), " ",
      el("button", { class: "primary", id: "dev-sign-in", on: { click: async () => {
        try {
          const answer = await api("POST", "/api/v1/auth/dev/sign-in", { name: name.value, admin: admin.checked });
          setToken(answer.token);
          await start();
        } catch (error) { show(signInPage(error)); }
      } } }, "Sign in"))
    : null;
  const wallet = config.siwe
    ? el("section", { class: "card" }, el("h2", {}, "Sign in with Ethereum"),
      el("button", { on: { click: () => siwe().catch((error) => show(signInPage(error))) } }, "Use my wallet"))
    : null;
  return el("div", {}, el("h1", {}, "Sign in"), problem ? errorText(problem) : null, dev, wallet,
    el("section", { class: "card" }, el("h2", {}, "With a token"), pasted, el("p", {},
      el("button", { on: { click: async () => { setToken(pasted.value.trim()); await start(); } } }, "Use this token"))),
    config.oidc_issuers && config.oidc_issuers.length
      ? el("p", { class: "muted" }, `OIDC issuers accepted: ${config.oidc_issuers.join(", ")}`) : null);
}

async function siwe() {
  if (!window.ethereum) throw new Error("No injected wallet (e.g. MetaMask) was found in this browser.");
  const [address] = await window.ethereum.request({ method: "eth_requestAccounts" });
  const chainId = parseInt(await window.ethereum.request({ method: "eth_chainId" }), 16);
  const { nonce } = await api("POST", "/api/v1/auth/siwe/nonce");
  const now = new Date().toISOString();
  const message = `${location.host} wants you to sign in with your Ethereum account:\n${address}\n\nSign in to creditflow.\n\n` +
    `URI: ${location.origin}\nVersion: 1\nChain ID: ${chainId}\nNonce: ${nonce}\nIssued At: ${now}`;
  const signature = await window.ethereum.request({ method: "personal_sign", params: [message, address] });
  const answer = await api("POST", "/api/v1/auth/siwe/verify", { message, signature });
  setToken(answer.token);
  await start();
}

// --- chat --------------------------------------------------------------------------------------------
function running() { try { return JSON.parse(localStorage.getItem(RUNNING_KEY)); } catch { return null; } }
function saveRunning(value) { if (value) localStorage.setItem(RUNNING_KEY, JSON.stringify(value)); else localStorage.removeItem(RUNNING_KEY); }

async function chatPage(conversationId) {
  const list = await api("GET", "/api/v1/chat/conversations?limit=50");
  const current = conversationId || (list.items[0] && list.items[0].id);
  const picker = el("select", { id: "model", "aria-label": "Model", on: { change: () => { state.model = picker.value; renderBalance(); } } },
    state.models.map((m) => el("option", { value: m.id, selected: m.id === state.model }, `${m.id}${m.available ? "" : " (unavailable)"}`)));
  const conversations = el("aside", { class: "conversations" },
    el("button", { class: "primary", id: "new-conversation", on: { click: async () => {
      const made = await api("POST", "/api/v1/chat/conversations", { model: state.model });
      location.hash = `#/chat/${made.id}`;
    } } }, "New conversation"),
    el("ul", {}, list.items.map((c) => el("li", {}, el("button", { "aria-current": String(c.id === current),
      on: { click: () => { location.hash = `#/chat/${c.id}`; } } }, c.title || `Conversation ${c.id.slice(0, 6)}`)))));
  if (!current) {
    show(el("div", { class: "chat" }, conversations, el("section", {}, el("div", { class: "toolbar" }, "Model ", picker),
      el("p", { class: "empty" }, "No conversation yet: start one."))));
    return;
  }
  const detail = await api("GET", `/api/v1/chat/conversations/${current}`);
  const messages = el("div", { class: "messages", id: "messages", "aria-live": "polite" });
  const total = el("span", { id: "conversation-total" }, `Conversation total: ${detail.total_charged} credits`);
  const input = el("textarea", { id: "prompt", "aria-label": "Message", placeholder: "Write a message" });
  const send = el("button", { class: "primary", id: "send" }, "Send");
  const cancel = el("button", { id: "cancel", hidden: true }, "Stop");
  const receipts = {};
  for (const m of detail.messages) {
    const bubble = el("div", { class: `msg ${m.role}`, "data-job": m.job_id || "" }, m.content);
    messages.append(bubble);
  }
  // Receipts of the replies shown (each reply's job once ended).
  for (const m of detail.messages.filter((x) => x.role === "assistant" && x.job_id)) {
    api("GET", `/api/v1/jobs/${m.job_id}`).then((job) => {
      receipts[m.job_id] = job.receipt;
      const bubble = messages.querySelector(`.msg.assistant[data-job="${m.job_id}"]`);
      if (bubble && job.receipt) bubble.append(receiptLine(job.receipt));
    }).catch(() => {});
  }
  show(el("div", { class: "chat" }, conversations, el("section", {},
    el("div", { class: "toolbar" }, "Model ", picker, total), messages,
    el("div", { class: "composer" }, input, send, cancel))));

  let bubble = null;
  const onEvent = (record) => ({ id, event, data }) => {
    if (event === "queued") {
      Object.assign(record, { job_id: data.job_id, events_url: data.events_url, conversation: current });
      cancel.hidden = false;
    }
    if (id) record.last = id;
    if (data && data.credits_held !== undefined && !["result", "failed", "canceled"].includes(event)) {
      document.getElementById("balance-held").hidden = false;
      document.getElementById("balance-held").textContent = `${data.credits_held} held for this reply`;
    }
    if (event === "token") { record.text = (record.text || "") + data.text; bubble.firstChild.textContent = record.text; }
    if (record.job_id) saveRunning(record);
    if (["result", "failed", "canceled"].includes(event)) {
      saveRunning(null);
      cancel.hidden = true;
      if (event === "failed") bubble.append(el("span", { class: "receipt error" }, `Failed: ${(data.error && data.error.message) || "error"}`));
      bubble.append(receiptLine(data.receipt));
      api("GET", `/api/v1/chat/conversations/${current}`).then((d) => { total.textContent = `Conversation total: ${d.total_charged} credits`; });
      loadAverages();
    }
  };
  const replyBubble = (text) => { bubble = el("div", { class: "msg assistant", "data-testid": "reply" }, el("span", {}, text || "")); messages.append(bubble); };

  cancel.addEventListener("click", async () => {
    const record = running();
    if (record) await api("POST", `/api/v1/jobs/${record.job_id}/cancel`).catch(() => {});
  });
  send.addEventListener("click", async () => {
    const content = input.value.trim();
    if (!content) return;
    input.value = "";
    send.disabled = true;
    messages.append(el("div", { class: "msg user" }, content));
    replyBubble("");
    const record = {};
    try {
      await postStreaming(`/api/v1/chat/conversations/${current}/messages`, { content, model: state.model }, onEvent(record), { key: newKey() });
    } catch (error) {
      bubble.append(errorText(error));
    } finally { send.disabled = false; }
  });

  // A reply in progress when the page was left: show what arrived and resume after its last event.
  let record = running();
  if (!record || record.conversation !== current) {
    const open = detail.messages.filter((m) => m.role === "user" && m.job_id).pop();
    const answered = open && detail.messages.some((m) => m.role === "assistant" && m.job_id === open.job_id);
    if (open && !answered) {
      const job = await api("GET", `/api/v1/jobs/${open.job_id}`).catch(() => null);
      if (job && ["queued", "running"].includes(job.status)) record = { job_id: job.id, events_url: `/api/v1/jobs/${job.id}/events`, conversation: current };
    }
  }
  if (record && record.conversation === current) {
    replyBubble(record.text);
    cancel.hidden = false;
    send.disabled = true;
    try { await follow(record.events_url, onEvent(record), { lastEventId: record.last }); } catch (error) { bubble.append(errorText(error)); }
    send.disabled = false;
  }
}

// --- transactions ------------------------------------------------------------------------------------
async function transactionsPage() {
  const page = await api("GET", "/api/v1/credits/transactions?limit=100");
  const rows = page.items.map((t) => {
    const outcome = el("span", { class: "verify-outcome" });
    const button = el("button", { class: "verify", disabled: !t.sealed, on: { click: async () => {
      outcome.textContent = "checking…";
      try {
        const proof = await api("GET", `/api/v1/credits/transactions/${t.id}/proof`);
        const got = await verifyProof(proof);
        const ok = got.entry && got.inclusion && got.signature !== false;
        outcome.className = `verify-outcome ${ok ? "ok" : "bad"}`;
        outcome.textContent = ok
          ? `verified: entry hash, inclusion in checkpoint ${proof.checkpoint.number}${got.signature ? ", Ed25519 signature" : ` (${got.detail})`}`
          : `NOT verified (entry ${got.entry}, inclusion ${got.inclusion}, signature ${got.signature}) ${got.detail}`;
      } catch (error) { outcome.className = "verify-outcome bad"; outcome.textContent = error.message; }
    } } }, "Verify");
    return el("tr", { "data-entry": t.id }, el("td", {}, t.id), el("td", {}, t.kind), el("td", {}, t.amount),
      el("td", {}, t.balance_after), el("td", {}, new Date(t.created_at).toLocaleString()),
      el("td", {}, el("code", { class: "hash" }, t.hash)), el("td", {}, t.sealed ? "sealed" : "not sealed yet"),
      el("td", {}, button, " ", outcome));
  });
  show(el("h1", {}, "Transactions"), el("p", { class: "muted" }, "Every entry is hash-chained; sealed entries can be checked here, in your browser, against the ledger's public key."),
    rows.length ? el("table", {}, el("thead", {}, el("tr", {}, ["Entry", "Kind", "Amount", "Balance after", "When", "Hash", "Sealed", ""].map((h) => el("th", {}, h)))), el("tbody", {}, rows))
      : el("p", { class: "empty" }, "No transactions yet."));
}

// --- the pages, by the URL fragment ----------------------------------------------------------------
const pages = {
  chat: chatPage,
  transactions: transactionsPage,
  keys: () => keysPage(),
  buy: () => buyPage(state),
  admin: adminPage,
  agents: () => agentsPage(state),
  images: imagesPage,
  webhooks: () => webhooksPage(),
  preferences: () => preferencesPage(state),
};

async function route() {
  if (!token()) { show(signInPage()); return; }
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const page = pages[name] || pages.chat;
  for (const link of document.querySelectorAll("nav a")) link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${name || "chat"}`);
  try { await page(arg); } catch (error) {
    if (error instanceof ApiError && error.status === 401) { setToken(null); show(signInPage(error)); return; }
    show(errorText(error));
  }
}

async function start() {
  if (!token()) { await route(); return; }
  try {
    state.me = await api("GET", "/api/v1/me");
  } catch (error) { setToken(null); show(signInPage(error)); return; }
  state.balance = state.me.balance;
  const roles = JSON.parse(atob((token().split(".")[1] || "").replace(/-/g, "+").replace(/_/g, "/") || "e30=") || "{}").roles || [];
  document.getElementById("nav-admin").hidden = !roles.includes("admin");
  document.getElementById("nav").hidden = false;
  document.getElementById("balance").hidden = false;
  const models = await api("GET", "/api/v1/models");
  state.models = models.items.filter((m) => m.kind === "chat");
  state.model = state.me.preferences.default_chat_model || (state.models.find((m) => m.id === "echo") || state.models[0] || {}).id;
  api("GET", "/api/v1/payments/packs").then((packs) => {
    const first = (packs.items || packs)[0];
    if (first) state.pack = { perCredit: Number(first.price) / Number(first.credits), currency: first.currency };
    renderBalance();
  }).catch(() => {});
  renderBalance();
  loadAverages();
  watchBalance();
  await route();
}

document.getElementById("sign-out").addEventListener("click", () => { setToken(null); saveRunning(null); location.hash = ""; route(); });
window.addEventListener("hashchange", route);
api("GET", "/api/v1/ui/config").then((config) => { state.config = config; }).catch(() => {}).finally(start);
