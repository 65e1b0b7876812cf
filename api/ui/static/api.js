// The API client of the web UI: the bearer token, JSON requests, and Server-Sent Events read with fetch
// (EventSource cannot send an Authorization header).

const TOKEN_KEY = "creditflow.token";

export function token() { return localStorage.getItem(TOKEN_KEY); }
export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(extra = {}) {
  const found = { Accept: "application/json", ...extra };
  if (token()) found.Authorization = `Bearer ${token()}`;
  return found;
}

export async function api(method, path, body, extra = {}) {
  const init = { method, headers: headers(extra) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof data === "object" ? data : null);
  return data;
}

// Read an SSE response: onEvent({id, event, data}) per event; resolves when the stream ends.
export async function readEvents(response, onEvent) {
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, problem);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const frame = { id: null, event: null, data: "" };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") frame.id = text;
        else if (field === "event") frame.event = text;
        else if (field === "data") frame.data += text;
      }
      if (frame.event) onEvent({ ...frame, data: frame.data ? JSON.parse(frame.data) : null });
    }
  }
}

// Follow an events URL (GET), from `lastEventId` when given.
export async function follow(path, onEvent, { lastEventId, signal } = {}) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  const response = await fetch(path, { headers: headers(extra), signal });
  return readEvents(response, onEvent);
}

// A job-creating POST answered as the job's event stream (one request to the first token).
export async function postStreaming(path, body, onEvent, { key, signal } = {}) {
  const extra = { Accept: "text/event-stream", "Content-Type": "application/json" };
  if (key) extra["Idempotency-Key"] = key;
  const response = await fetch(path, { method: "POST", headers: headers(extra), body: JSON.stringify(body), signal });
  return readEvents(response, onEvent);
}

export function newKey() { return crypto.randomUUID(); }

// An owner-only resource (an image) as a blob: URL for <img>: an <img src> cannot send the bearer token.
export async function blobUrl(path) {
  const response = await fetch(path, { headers: headers({ Accept: "image/*" }) });
  if (!response.ok) throw new ApiError(response.status, null);
  return URL.createObjectURL(await response.blob());
}
