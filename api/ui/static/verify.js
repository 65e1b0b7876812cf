// Check a ledger entry's inclusion proof and its checkpoint's Ed25519 signature in the browser, as
// ledger/sealing.py verify_proof does: rehash the entry from its fields, fold the audit path up to the
// root (RFC 9162), and verify the signature over the checkpoint's canonical bytes with the API's key.

const enc = new TextEncoder();
const hex = (bytes) => [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text) => new Uint8Array(text.match(/../g).map((pair) => parseInt(pair, 16)));
const sha256 = async (...parts) => new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}
function int64(value) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, BigInt(value));
  return out;
}
function uint32(value) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}
// ledger/canonical.py _field: N for null, I + int64, S/B + length + bytes.
function field(value) {
  if (value === null || value === undefined) return enc.encode("N");
  if (typeof value === "number" || typeof value === "bigint") return concat(enc.encode("I"), int64(value));
  const bytes = typeof value === "string" ? enc.encode(value) : value;
  return concat(enc.encode(typeof value === "string" ? "S" : "B"), uint32(bytes.length), bytes);
}
const canonical = (...fields) => concat(...fields.map(field));

async function entryHash(proof) {
  const e = proof.entry;
  const body = await sha256(canonical("creditflow.entry.v1", e.kind, e.counterparty_id, e.amount, e.hold_id,
    e.lot_id, e.reference, e.idempotency_key, e.created_at_us));
  const position = concat(...[e.account_id, e.seq, e.posted_after, e.held_after, e.debt_after].map(int64));
  return sha256(unhex(proof.prev_hash), position, body);
}

async function rootFromPath(leafOf, index, size, path) {
  if (!(index >= 0 && index < size)) return null;
  let fn = index, sn = size - 1;
  let current = await sha256(new Uint8Array([0]), leafOf);
  for (const sibling of path) {
    if (sn === 0) return null;
    if (fn & 1 || fn === sn) {
      current = await sha256(new Uint8Array([1]), sibling, current);
      if (!(fn & 1)) while (fn && !(fn & 1)) { fn >>= 1; sn >>= 1; }
    } else {
      current = await sha256(new Uint8Array([1]), current, sibling);
    }
    fn >>= 1; sn >>= 1;
  }
  return sn === 0 ? current : null;
}

function pemBody(pem) {
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

// {entry, inclusion, signature, detail}: each check's outcome (signature null when it can't be checked).
export async function verifyProof(proof) {
  const computed = await entryHash(proof);
  const entry = hex(computed) === proof.entry_hash;
  const cp = proof.checkpoint;
  const root = await rootFromPath(computed, proof.leaf_index, cp.size, proof.audit_path.map(unhex));
  const inclusion = root !== null && hex(root) === cp.root;
  if (!proof.public_key || cp.algorithm !== "ed25519") {
    return { entry, inclusion, signature: null, detail: "the ledger signs with HMAC: no public key to check" };
  }
  const message = canonical("creditflow.checkpoint.v1", cp.number, unhex(cp.prev_hash), unhex(cp.root), cp.size,
    cp.created_at_us);
  let signature = false, detail = "";
  try {
    const key = await crypto.subtle.importKey("spki", pemBody(proof.public_key), { name: "Ed25519" }, false, ["verify"]);
    signature = await crypto.subtle.verify({ name: "Ed25519" }, key, unhex(cp.signature), message);
  } catch (error) {
    detail = `this browser cannot check Ed25519 signatures (${error.name})`;
    signature = null;
  }
  return { entry, inclusion, signature, detail };
}
