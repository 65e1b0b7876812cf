// Small DOM helpers shared by the pages: build elements, replace the main region, show problems.
import { ApiError } from "/ui/api.js";

export const main = document.getElementById("main");

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "on") for (const [kind, fn] of Object.entries(value)) node.addEventListener(kind, fn);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}
export const show = (...nodes) => main.replaceChildren(...nodes);
export const errorText = (error) => el("p", { class: "error", role: "alert" }, error instanceof ApiError ? error.message : String(error));
export const short = (hash) => (hash ? `${hash.slice(0, 12)}…` : "—");
export const credits = (text) => Number(text);
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

export function receiptLine(receipt) {
  if (!receipt) return null;
  const sealed = receipt.sealed_in ? ` · sealed in checkpoint ${receipt.sealed_in}` : " · not sealed yet";
  return el("span", { class: "receipt", "data-testid": "receipt" },
    `Charged ${receipt.charged} credits · released ${receipt.released} · entry #${receipt.entry_id} `,
    el("code", { title: receipt.entry_hash || "" }, short(receipt.entry_hash)), ` · prices ${receipt.price_version}${sealed}`);
}
