#!/usr/bin/env node
// verify.mjs — an independent verifier of an Attestly evidence bucket or auditor packet.
//
// Written against VERIFY.md (the specification in every auditor packet), not against Attestly's Python
// code, and using Node.js's standard library only (node >= 20: crypto for SHA-256, Ed25519 and ECDSA
// P-256; https/http for S3 with AWS Signature Version 4; zlib to read the packet zip). Nothing to install.
//
//   node verify.mjs --bucket BUCKET --public-key public-key.pem [--from YYYY-MM-DD] [--to YYYY-MM-DD]
//                   [--endpoint-url URL] [--region REGION] [--concurrency N] [--json]
//   node verify.mjs --packet PACKET.zip|DIR [--public-key public-key.pem] [--json]
//
// Credentials for --bucket come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN;
// the region from --region, AWS_REGION or AWS_DEFAULT_REGION (default us-east-1).
// Exit status: 0 everything verified; 1 a problem was found (each is listed); 2 usage or access error.
// The problems, their kinds and the --json report are those of `attestly verify`.

import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";

export const MAX_DIGEST_BYTES = 64 * 1024 * 1024;
export const MAX_DEPTH = 64;
const DIGEST_PREFIX = "digests/";
const GENESIS = "0".repeat(64);
const DIGEST_SCHEMAS = { "attestly.digest/v1": 1, "attestly.digest/v2": 2 };
const STATEMENT_CONTEXT = "attestly.manual-statement/v1:";
const HEX64 = /^[0-9a-f]{64}$/;
const LABELS = {
  malformed: "MALFORMED",
  altered: "ALTERED",
  missing: "MISSING",
  replaced: "REPLACED BY A NEWER VERSION",
  lock: "LOCK",
  digest_missing: "DIGEST MISSING",
  digest_altered: "DIGEST ALTERED",
  chain_broken: "CHAIN BROKEN",
  bad_signature: "BAD SIGNATURE",
  ledger_altered: "LEDGER ALTERED",
  packet_altered: "PACKET ALTERED",
};

export class Malformed extends Error {}
class UsageError extends Error {}

// ------------------------------------------------------------------------------------------ JSON
// A strict JSON parser (RFC 8259) that keeps each number's text, refuses duplicate keys, lone
// surrogates, non-finite numbers and nesting deeper than MAX_DEPTH. Objects have no prototype.

export class Num {
  constructor(text) {
    this.text = text;
    this.value = Number(text);
    this.isInt = !/[.eE]/.test(text);
  }
}

export function parseJson(text) {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const fail = (what) => {
    throw new Malformed(`not readable JSON (${what} at char ${i})`);
  };
  const value = (depth) => {
    if (depth > MAX_DEPTH) throw new Malformed(`nested deeper than ${MAX_DEPTH} levels`);
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = Object.create(null);
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const k = string();
        if (Object.prototype.hasOwnProperty.call(obj, k)) fail(`duplicate key ${JSON.stringify(k.slice(0, 40))}`);
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        obj[k] = value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", i)) return (i += 4), true;
    if (text.startsWith("false", i)) return (i += 5), false;
    if (text.startsWith("null", i)) return (i += 4), null;
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m || !m[0]) fail("unexpected character");
    i += m[0].length;
    const n = new Num(m[0]);
    if (!Number.isFinite(n.value)) throw new Malformed(`not readable JSON (number ${m[0].slice(0, 24)} is out of range)`);
    return n;
  };
  const string = () => {
    i++; // opening quote
    let out = "";
    for (;;) {
      const j = text.indexOf('"', i);
      const k = text.indexOf("\\", i);
      if (j < 0) fail("unterminated string");
      if (k < 0 || j < k) {
        out += text.slice(i, j);
        i = j + 1;
        break;
      }
      out += text.slice(i, k);
      i = k + 1;
      const e = text[i++];
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e];
      if (simple !== undefined) out += simple;
      else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i, i + 4))) {
        out += String.fromCharCode(parseInt(text.slice(i, i + 4), 16));
        i += 4;
      } else fail("bad escape");
    }
    return out; // raw control characters inside strings are refused by rawControlCheck
  };
  const v = value(1);
  ws();
  if (i !== text.length) fail("extra data");
  return v;
}

function rawControlCheck(text) {
  // RFC 8259: control characters must be escaped inside strings. A quick scan outside the parser.
  let inStr = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inStr) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inStr = false;
      else if (c < 0x20) throw new Malformed(`not readable JSON (control character in a string at char ${i})`);
    } else if (c === 0x22) inStr = true;
  }
}

export function parseBytes(buf) {
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(buf);
  } catch {
    throw new Malformed("not readable JSON (not UTF-8)");
  }
  rawControlCheck(text);
  return parseJson(text);
}

// ------------------------------------------------------------------------------ canonical forms
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function canonString(s) {
  if (LONE_SURROGATE.test(s)) throw new Malformed("no canonical JSON form: a string holds a lone surrogate");
  return JSON.stringify(s); // escapes exactly ", \, \b \f \n \r \t and other C0 as \u00xx (lower case)
}

const MAX_SAFE = 9007199254740991n;

// RFC 8785 (JCS): keys sorted by UTF-16 code units, numbers as ECMAScript's Number::toString.
export function jcs(v) {
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (v instanceof Num) {
    if (v.isInt) {
      const b = BigInt(v.text);
      if (b > MAX_SAFE || b < -MAX_SAFE) throw new Malformed(`no canonical JSON form: ${v.text} exceeds safe integer domain for JSON floats`);
    }
    return String(v.value === 0 ? 0 : v.value);
  }
  if (typeof v === "string") return canonString(v);
  if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
  const keys = Object.keys(v).sort(); // default sort: UTF-16 code units
  return "{" + keys.map((k) => canonString(k) + ":" + jcs(v[k])).join(",") + "}";
}

function byCodePoint(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

// Python's float repr (shortest round-trip digits; exponent form below 1e-4 and from 1e16).
export function pythonFloat(x) {
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mant, expText] = Math.abs(x).toExponential().split("e");
  const digits = mant.replace(".", "");
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
    const e = Math.abs(exp) < 10 ? "0" + Math.abs(exp) : String(Math.abs(exp));
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${e}`;
  }
  let s;
  if (exp < 0) s = "0." + "0".repeat(-exp - 1) + digits;
  else if (digits.length > exp + 1) s = digits.slice(0, exp + 1) + "." + digits.slice(exp + 1);
  else s = digits + "0".repeat(exp + 1 - digits.length) + ".0";
  return sign + s;
}

// Format 1: Python's json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False).
export function v1(v) {
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (v instanceof Num) return v.isInt ? BigInt(v.text).toString() : pythonFloat(v.value);
  if (typeof v === "string") return canonString(v);
  if (Array.isArray(v)) return "[" + v.map(v1).join(",") + "]";
  const keys = Object.keys(v).sort(byCodePoint);
  return "{" + keys.map((k) => canonString(k) + ":" + v1(v[k])).join(",") + "}";
}

export function canonical(version, v) {
  return Buffer.from(version === 2 ? jcs(v) : v1(v), "utf8");
}

// ------------------------------------------------------------------------------- hashes, keys
export const sha256 = (b) => crypto.createHash("sha256").update(b).digest();
export const sha256hex = (b) => crypto.createHash("sha256").update(b).digest("hex");

// RFC 6962 section 2.1: leaves prefixed 0x00, interior nodes 0x01; the empty tree is SHA-256("").
export function merkleRoot(leaves) {
  if (leaves.length === 0) return sha256(Buffer.alloc(0));
  const mth = (hs) => {
    if (hs.length === 1) return hs[0];
    let k = 1;
    while (k * 2 < hs.length) k *= 2;
    return sha256(Buffer.concat([Buffer.from([1]), mth(hs.slice(0, k)), mth(hs.slice(k))]));
  };
  return mth(leaves.map((l) => sha256(Buffer.concat([Buffer.from([0]), l]))));
}

export function fingerprint(pem) {
  return sha256hex(crypto.createPublicKey(pem).export({ type: "spki", format: "der" }));
}

export function verifySignature(pem, algorithm, message, signature) {
  let key;
  try {
    key = crypto.createPublicKey(pem);
  } catch {
    return false;
  }
  try {
    if (algorithm === "ed25519" && key.asymmetricKeyType === "ed25519") return crypto.verify(null, message, key, signature);
    if (algorithm === "ecdsa-p256-sha256" && key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1")
      return crypto.verify("sha256", message, { key, dsaEncoding: "der" }, signature);
  } catch {
    return false;
  }
  return false;
}

function b64decode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  return Buffer.from(text, "base64");
}

// ------------------------------------------------------------------------------ digest parsing
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Num);
const isInt = (v) => v instanceof Num && v.isInt;
const optStr = (v) => v === undefined || v === null || typeof v === "string";
const intOf = (v) => Number(v.text);
function expect(cond, where, what) {
  if (!cond) throw new Malformed(`${where}: ${what}`);
}

export function parseDigest(raw) {
  if (raw.length > MAX_DIGEST_BYTES)
    throw new Malformed(`${raw.length.toLocaleString("en-US")} bytes; a digest may be at most ${MAX_DIGEST_BYTES.toLocaleString("en-US")}`);
  const doc = parseBytes(raw);
  expect(isObj(doc), "document", "not a JSON object");
  const digest = doc.digest;
  const sigText = doc.signature;
  expect(isObj(digest), "digest", "missing or not an object");
  expect(typeof sigText === "string" && sigText !== "", "signature", "missing or not a string");
  const signature = b64decode(sigText);
  if (signature === null) throw new Malformed("signature: not base64");
  expect(typeof digest.schema === "string" && digest.schema in DIGEST_SCHEMAS, "digest.schema",
    `is ${JSON.stringify(String(digest.schema).slice(0, 60))}, expected one of ${JSON.stringify(Object.keys(DIGEST_SCHEMAS))}`);
  for (const name of ["signature_algorithm", "merkle_root"]) expect(typeof digest[name] === "string", `digest.${name}`, "missing or not a string");
  expect(optStr(digest.public_key_fingerprint), "digest.public_key_fingerprint", "not a string");
  const prev = digest.previous;
  expect(prev === undefined || prev === null || isObj(prev), "digest.previous", "not an object");
  if (isObj(prev)) for (const name of ["key", "sha256", "signature"]) expect(optStr(prev[name]), `digest.previous.${name}`, "not a string");
  const tr = digest.time_range === undefined ? Object.create(null) : digest.time_range;
  expect(isObj(tr), "digest.time_range", "not an object");
  expect(optStr(tr.start) && optStr(tr.end), "digest.time_range", "start/end not strings");
  const entries = digest.entries;
  expect(Array.isArray(entries), "digest.entries", "missing or not a list");
  entries.forEach((e, i) => {
    const where = `digest.entries[${i}]`;
    expect(isObj(e), where, "not an object");
    expect(isInt(e.seq) && intOf(e.seq) >= 1, `${where}.seq`, "not a positive integer");
    expect(typeof e.kind === "string", `${where}.kind`, "missing or not a string");
    expect(typeof e.recorded_at === "string", `${where}.recorded_at`, "missing or not a string");
    expect(isObj(e.body), `${where}.body`, "missing or not an object");
    for (const name of ["prev_hash", "entry_hash"]) expect(typeof e[name] === "string" && HEX64.test(e[name]), `${where}.${name}`, "not 64 lower-case hex digits");
    if ("format" in e) expect(isInt(e.format) && intOf(e.format) === 2, `${where}.format`, "is present but not 2");
  });
  return { digest, signature, sigText };
}

const CONTENT_KEYS = ["seq", "kind", "recorded_at", "body", "prev_hash", "format"];
export function entryContent(e) {
  const out = Object.create(null);
  for (const k of CONTENT_KEYS) if (k in e) out[k] = e[k];
  return out;
}
export const entryCanonical = (content) => canonical("format" in content ? 2 : 1, content);

// ------------------------------------------------------------------------------ ledgered objects
function parseIsoUtc(text) {
  // Python's datetime.fromisoformat after replacing Z: date, optional time, optional offset.
  if (typeof text !== "string") return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?)?(Z|[+-]\d{2}:\d{2})?$/.exec(text);
  if (!m) return null;
  const [, y, mo, d, h = "0", mi = "0", s = "0", frac = "", off = "Z"] = m;
  let ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, +s) + Number((frac + "000000").slice(0, 6)) / 1000;
  const check = new Date(Date.UTC(+y, +mo - 1, +d));
  if (check.getUTCFullYear() !== +y || check.getUTCMonth() !== +mo - 1 || check.getUTCDate() !== +d || +h > 23 || +mi > 59 || +s > 59) return null;
  if (off !== "Z") ms -= (off[0] === "-" ? -1 : 1) * (Number(off.slice(1, 3)) * 60 + Number(off.slice(4, 6))) * 60000;
  return ms; // naive times are taken as UTC
}

function overlapsRange(pStart, pEnd, start, end) {
  if (start !== null && pEnd !== null && pEnd <= start) return false;
  return !(end !== null && pStart !== null && pStart >= end);
}

function monthRange(month) {
  if (typeof month !== "string" || !/^\d{4}-\d{2}$/.test(month)) return [null, null];
  const y = +month.slice(0, 4);
  const m = +month.slice(5);
  if (m < 1 || m > 12) return [null, null];
  return [Date.UTC(y, m - 1, 1), Date.UTC(y + Math.floor(m / 12), m % 12, 1)];
}

function dayRange(period) {
  if (!isObj(period)) return [null, null];
  const a = typeof period.start === "string" && /^\d{4}-\d{2}-\d{2}$/.test(period.start) ? parseIsoUtc(period.start) : null;
  const b = typeof period.end === "string" && /^\d{4}-\d{2}-\d{2}$/.test(period.end) ? parseIsoUtc(period.end) : null;
  if (a === null || b === null) return [null, null];
  return [a, b + 86400000];
}

function ref(kind, seq, d, retainUntil) {
  const where = `ledger entry ${seq} (${kind})`;
  if (!isObj(d)) throw new Malformed(`${where}: an object reference is not an object`);
  for (const name of ["key", "version_id", "sha256"])
    if (typeof d[name] !== "string" || !d[name]) throw new Malformed(`${where}: object reference lacks '${name}'`);
  if (!HEX64.test(d.sha256)) throw new Malformed(`${where}: sha256 of ${d.key.slice(0, 80)} is not 64 hex digits`);
  const lock = "retain_until" in d ? d.retain_until : retainUntil;
  if (lock !== undefined && lock !== null && typeof lock !== "string")
    throw new Malformed(`${where}: retain_until of ${d.key.slice(0, 80)} is not a string`);
  return { kind, seq, key: d.key, versionId: d.version_id, sha256: d.sha256, retainUntil: lock ?? null, bucket: typeof d.bucket === "string" ? d.bucket : null };
}

export function ledgeredObjects(e, start, end) {
  const kind = e.kind;
  const seq = intOf(e.seq);
  const body = e.body;
  const refs = [];
  if (kind === "evidence") {
    const ps = body.period_start === undefined || body.period_start === null || body.period_start === "" ? null : parseIsoUtc(body.period_start);
    const pe = body.period_end === undefined || body.period_end === null || body.period_end === "" ? null : parseIsoUtc(body.period_end);
    if ((ps === null && body.period_start) || (pe === null && body.period_end))
      throw new Malformed(`ledger entry ${seq} (evidence): period_start/period_end are not times`);
    if (overlapsRange(ps, pe, start, end)) {
      refs.push(ref(kind, seq, body));
      const att = body.attachments === undefined ? [] : body.attachments;
      if (!Array.isArray(att)) throw new Malformed(`ledger entry ${seq} (evidence): attachments is not a list`);
      for (const a of att) refs.push(ref("attachment", seq, a));
    }
  } else if (kind === "report") {
    const [a, b] = dayRange(body.period);
    if (overlapsRange(a, b, start, end)) {
      const objects = body.objects === undefined ? [] : body.objects;
      if (!Array.isArray(objects)) throw new Malformed(`ledger entry ${seq} (report): objects is not a list`);
      for (const o of objects) refs.push(ref(kind, seq, o, body.retain_until));
      refs.push(ref(kind, seq, body.packet, body.retain_until));
    }
  } else if (kind === "archive") {
    const manifest = body.manifest;
    if (!isObj(manifest)) throw new Malformed(`ledger entry ${seq} (archive): manifest is not an object`);
    const batch = isObj(manifest.batch) ? manifest.batch : Object.create(null);
    const [a, b] = monthRange(batch.month);
    if (overlapsRange(a, b, start, end)) {
      refs.push(ref(kind, seq, manifest.object, batch.retain_until));
      refs.push(ref("evidence", seq, body.evidence));
    }
  } else if (kind === "disposal" && "evidence" in body) {
    refs.push(ref("evidence", seq, body.evidence));
  } else if (kind === "scan") {
    refs.push(ref(kind, seq, body.raw, body.retain_until));
  } else if (kind === "policy") {
    refs.push(ref(kind, seq, body));
  }
  // Deliberately none for kinds that record no stored object: run, hold, hold_release, erasure, note,
  // refusal, exception_response, exception_accept, exception_close, sample (as verify.py).
  return refs;
}

function statementProblem(body, pem) {
  const sig = body.signature;
  if (!isObj(sig)) return "the statement carries no signature";
  const raw = b64decode(typeof sig.signature === "string" ? sig.signature : String(sig.signature ?? ""));
  if (raw === null) return "the statement's signature is not base64";
  const message = Buffer.from(STATEMENT_CONTEXT + (typeof body.sha256 === "string" ? body.sha256 : ""), "utf8");
  return verifySignature(pem, typeof sig.algorithm === "string" ? sig.algorithm : "", message, raw)
    ? null
    : "the statement's signature does not verify under the public key";
}

// ------------------------------------------------------------------------------ S3 over SigV4
function uriEncode(s, keepSlash) {
  return Array.from(Buffer.from(s, "utf8"))
    .map((b) => {
      const c = String.fromCharCode(b);
      if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === "/")) return c;
      return "%" + b.toString(16).toUpperCase().padStart(2, "0");
    })
    .join("");
}

const hmac = (key, data) => crypto.createHmac("sha256", key).update(data, "utf8").digest();

// AWS Signature Version 4 for an S3 GET: returns the headers to send.
export function signV4({ method = "GET", host, path: p, query, region, credentials, amzDate }) {
  const date = amzDate.slice(0, 8);
  const payloadHash = sha256hex(Buffer.alloc(0));
  const headers = { host, "x-amz-content-sha256": payloadHash, "x-amz-date": amzDate };
  if (credentials.sessionToken) headers["x-amz-security-token"] = credentials.sessionToken;
  const names = Object.keys(headers).sort();
  const canonicalQuery = Object.keys(query)
    .sort()
    .map((k) => `${uriEncode(k, false)}=${uriEncode(query[k], false)}`)
    .join("&");
  const canonicalRequest = [method, uriEncode(p, true), canonicalQuery, names.map((n) => `${n}:${String(headers[n]).trim()}\n`).join(""), names.join(";"), payloadHash].join("\n");
  const scope = `${date}/${region}/s3/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256hex(Buffer.from(canonicalRequest, "utf8"))].join("\n");
  const kSigning = hmac(hmac(hmac(hmac("AWS4" + credentials.secretAccessKey, date), region), "s3"), "aws4_request");
  const signature = crypto.createHmac("sha256", kSigning).update(toSign, "utf8").digest("hex");
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, Signature=${signature}`;
  return { headers, canonicalRequest, signature };
}

class S3Error extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function xmlText(s) {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, e) =>
    e === "amp" ? "&" : e === "lt" ? "<" : e === "gt" ? ">" : e === "quot" ? '"' : e === "apos" ? "'" : String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)),
  );
}
const tag = (block, name) => {
  const m = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(block);
  return m ? xmlText(m[1]) : null;
};

export class S3 {
  constructor({ endpoint, region, credentials }) {
    this.region = region;
    this.credentials = credentials;
    this.endpoint = endpoint ? new URL(endpoint) : null;
    this.agents = { http: new http.Agent({ keepAlive: true, maxSockets: 32 }), https: new https.Agent({ keepAlive: true, maxSockets: 32 }) };
  }

  request(bucket, key, query, { stream = false } = {}) {
    let host, base, proto;
    if (this.endpoint) {
      proto = this.endpoint.protocol;
      host = this.endpoint.host;
      base = this.endpoint.pathname.replace(/\/$/, "") + "/" + bucket; // path style for custom endpoints
    } else {
      proto = "https:";
      host = `${bucket}.s3.${this.region}.amazonaws.com`;
      base = "";
    }
    const p = base + "/" + (key ?? "");
    const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
    const { headers } = signV4({ host, path: p, query, region: this.region, credentials: this.credentials, amzDate });
    const qs = Object.keys(query).map((k) => `${uriEncode(k, false)}=${uriEncode(query[k], false)}`).join("&");
    const lib = proto === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(
        { protocol: proto, host: this.endpoint ? this.endpoint.hostname : host, port: this.endpoint?.port || undefined, method: "GET", path: uriEncode(p, true) + (qs ? "?" + qs : ""), headers, agent: this.agents[proto === "https:" ? "https" : "http"] },
        (res) => {
          if (res.statusCode >= 300) {
            const chunks = [];
            res.on("data", (c) => chunks.push(c));
            res.on("end", () => {
              const text = Buffer.concat(chunks).toString("utf8");
              const code = tag(text, "Code") || String(res.statusCode);
              reject(new S3Error(res.statusCode, code, `${code}: ${tag(text, "Message") || ""}`));
            });
            res.on("error", reject);
            return;
          }
          if (stream) return resolve(res);
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  // All versions and delete markers under prefix, oldest first per key (ties: the latest last).
  async versions(bucket, prefix) {
    const out = new Map();
    let keyMarker = null;
    let versionMarker = null;
    for (;;) {
      const query = { versions: "", prefix };
      if (keyMarker !== null) query["key-marker"] = keyMarker;
      if (versionMarker !== null) query["version-id-marker"] = versionMarker;
      const { body } = await this.request(bucket, "", query);
      const xml = body.toString("utf8");
      for (const [, kind, block] of xml.matchAll(/<(Version|DeleteMarker)>([\s\S]*?)<\/\1>/g)) {
        const k = tag(block, "Key");
        if (!out.has(k)) out.set(k, []);
        out.get(k).push({ versionId: tag(block, "VersionId"), lastModified: Date.parse(tag(block, "LastModified")), isLatest: tag(block, "IsLatest") === "true", deleteMarker: kind === "DeleteMarker" });
      }
      if (tag(xml, "IsTruncated") !== "true") break;
      keyMarker = tag(xml, "NextKeyMarker");
      versionMarker = tag(xml, "NextVersionIdMarker");
    }
    for (const vs of out.values()) vs.sort((a, b) => a.lastModified - b.lastModified || Number(a.isLatest) - Number(b.isLatest));
    return out;
  }

  async get(bucket, key, versionId, limit = Infinity) {
    const res = await this.request(bucket, key, { versionId }, { stream: true });
    const h = crypto.createHash("sha256");
    const chunks = [];
    let size = 0;
    for await (const chunk of res) {
      size += chunk.length;
      if (limit !== Infinity) {
        if (size <= limit + 1) chunks.push(chunk);
      } else h.update(chunk);
    }
    return { headers: res.headers, sha256: limit === Infinity ? h.digest("hex") : null, size, body: limit === Infinity ? null : Buffer.concat(chunks) };
  }
}

// ------------------------------------------------------------------------------ the report
export class Report {
  constructor(bucket, requested) {
    Object.assign(this, { bucket, requested, digestsFound: 0, digestsValid: 0, entries: 0, objectsRequested: 0, objectsVerified: 0, bytesVerified: 0, entriesUntrusted: 0, byKind: {}, sealedRange: { start: null, end: null }, problems: [] });
  }
  problem(kind, key, detail) {
    this.problems.push({ kind, key, detail });
  }
  get ok() {
    return this.problems.length === 0;
  }
  toJSON() {
    const sortedKinds = Object.fromEntries(Object.keys(this.byKind).sort().map((k) => [k, this.byKind[k]]));
    return {
      ok: this.ok,
      bucket: this.bucket,
      requested: this.requested,
      found: {
        digests: this.digestsFound,
        digests_valid: this.digestsValid,
        ledger_entries: this.entries,
        evidence_objects: this.byKind.evidence?.requested ?? 0,
        evidence_objects_verified: this.byKind.evidence?.verified ?? 0,
        ledgered_objects: this.objectsRequested,
        ledgered_objects_verified: this.objectsVerified,
        objects_by_kind: sortedKinds,
        entries_untrusted: this.entriesUntrusted,
        bytes_verified: this.bytesVerified,
        sealed_range: this.sealedRange,
      },
      ledger_checked: false,
      ...(this.sumsSigned === undefined ? {} : { sha256sums_signed: this.sumsSigned }),
      problems: this.problems,
    };
  }
  summaryLines(where) {
    const lines = this.problems.map((p) => `${LABELS[p.kind].padEnd(28)} ${p.key}  ${p.detail}`);
    const kinds = Object.keys(this.byKind).sort().map((k) => `${k} ${this.byKind[k].verified}/${this.byKind[k].requested}`).join(", ") || "none";
    lines.push(
      `${this.ok ? "OK" : "FAILED"}: ${where} — ${this.digestsValid}/${this.digestsFound} digests valid, ${this.entries} ledger entries, ` +
        `${this.objectsVerified}/${this.objectsRequested} ledgered objects verified (${kinds}; ${this.bytesVerified} bytes); sealed ` +
        `${this.sealedRange.start || "-"} .. ${this.sealedRange.end || "-"}; requested ${this.requested.from || "beginning"} .. ${this.requested.to || "now"} (ledger database not checked)`,
    );
    if (!this.ok) {
      const counts = {};
      for (const p of this.problems) counts[p.kind] = (counts[p.kind] || 0) + 1;
      lines.push("problems: " + Object.keys(counts).sort().map((k) => `${LABELS[k].toLowerCase()}: ${counts[k]}`).join(", "));
    }
    return lines;
  }
}

// ------------------------------------------------------------------------------ digests and chain
// Checks one digest (its bytes already read) and the chain to the previous one; returns the refs of
// the objects its entries record when the digest is authentic and intact.
function checkDigest({ key, raw, ordered, keyFp, pem, start, end, report, state, inPacket = false }) {
  const previous = state.previous;
  const { digest, signature, sigText } = parseDigest(raw);
  let signed;
  signed = canonical(DIGEST_SCHEMAS[digest.schema], digest);
  let digestOk = true;
  const authentic = verifySignature(pem, String(digest.signature_algorithm), signed, signature);
  if (!authentic) {
    let detail = "signature does not verify with the given public key";
    if (digest.public_key_fingerprint !== keyFp)
      detail += ` (digest was signed by key ${String(digest.public_key_fingerprint ?? "None").slice(0, 16)}…, given ${keyFp.slice(0, 16)}…)`;
    report.problem("bad_signature", key, detail + "; its entries are not used");
    digestOk = false;
  }
  const entries = digest.entries;
  let recomputedOk = true;
  const leaves = [];
  for (const e of entries) {
    const content = entryContent(e);
    let bytes;
    try {
      bytes = entryCanonical(content);
    } catch (err) {
      throw new Malformed(`ledger entry ${intOf(e.seq)}: ${err.message}`);
    }
    if (sha256hex(bytes) !== e.entry_hash) {
      report.problem("digest_altered", key, `ledger entry ${intOf(e.seq)}: content does not match its hash`);
      recomputedOk = false;
    }
    leaves.push(bytes);
  }
  if (merkleRoot(leaves).toString("hex") !== digest.merkle_root) {
    report.problem("digest_altered", key, "Merkle root does not match the digest's entries");
    recomputedOk = false;
  }
  digestOk = digestOk && recomputedOk;

  const expectedFirst = previous ? previous.lastSeq + 1 : 1;
  const expectedPrevHash = previous ? previous.lastEntryHash : GENESIS;
  const prevRef = digest.previous;
  const named = isObj(prevRef) ? prevRef.key ?? null : null;
  if (inPacket) {
    // A packet holds the digests covering its evidence, not necessarily every digest: a chain link is
    // checked where both ends are in the packet.
    if (previous && named === previous.key && (prevRef.sha256 !== previous.sha256 || prevRef.signature !== previous.signature)) {
      report.problem("chain_broken", key, `the hash or signature it records for ${previous.key} differs`);
      digestOk = false;
    }
    if (previous && named === previous.key && entries.length && (intOf(entries[0].seq) !== expectedFirst || entries[0].prev_hash !== expectedPrevHash)) {
      report.problem("chain_broken", key, `ledger entry ${intOf(entries[0].seq)} does not link to the previous entry`);
      digestOk = false;
    }
  } else if (named !== null && !ordered.includes(named)) {
    report.problem("digest_missing", named, `named as previous by ${key} but not in the bucket`);
    digestOk = false;
  } else if (previous !== null) {
    if (named !== previous.key) {
      report.problem("chain_broken", key, `names previous digest ${named === null ? "None" : named}, expected ${previous.key}`);
      digestOk = false;
    } else if (!isObj(prevRef) || prevRef.sha256 !== previous.sha256 || prevRef.signature !== previous.signature) {
      report.problem("chain_broken", key, `the hash or signature it records for ${previous.key} differs`);
      digestOk = false;
    }
  } else if (named === null && key !== ordered[0]) {
    report.problem("chain_broken", key, "names no previous digest but is not the first");
    digestOk = false;
  }
  if (!inPacket) {
    if (entries.length && intOf(entries[0].seq) !== expectedFirst) {
      report.problem("chain_broken", key, `gap: starts at ledger entry ${intOf(entries[0].seq)}, expected ${expectedFirst}` + (previous ? ` after ${previous.key}` : ""));
      digestOk = false;
    } else if (entries.length && entries[0].prev_hash !== expectedPrevHash) {
      report.problem("chain_broken", key, `ledger entry ${intOf(entries[0].seq)} does not link to the previous entry`);
      digestOk = false;
    }
  }
  for (let i = 1; i < entries.length; i++) {
    const a = entries[i - 1];
    const b = entries[i];
    if (intOf(b.seq) !== intOf(a.seq) + 1 || b.prev_hash !== a.entry_hash) {
      report.problem("chain_broken", key, `ledger entry ${intOf(b.seq)} does not follow entry ${intOf(a.seq)}`);
      digestOk = false;
    }
  }
  report.entries += entries.length;
  if (digestOk) report.digestsValid += 1;
  const tr = isObj(digest.time_range) ? digest.time_range : {};
  if (report.sealedRange.start === null) report.sealedRange.start = tr.start ?? null;
  report.sealedRange.end = tr.end ?? null;
  const found = [];
  const entryList = [];
  if (authentic && recomputedOk) {
    for (const e of entries) {
      const objs = ledgeredObjects(e, start, end);
      found.push(...objs);
      if (objs.length && e.kind === "evidence" && e.body.collector === "manual") {
        const why = statementProblem(e.body, pem);
        if (why !== null) report.problem("bad_signature", String(e.body.key ?? "").slice(0, 200), `ledger entry ${intOf(e.seq)}: ${why}`);
      }
      entryList.push(e);
    }
  } else {
    report.entriesUntrusted += entries.length;
  }
  state.previous = {
    key,
    sha256: sha256hex(raw),
    signature: sigText,
    lastSeq: entries.length ? intOf(entries[entries.length - 1].seq) : expectedFirst - 1,
    lastEntryHash: entries.length ? entries[entries.length - 1].entry_hash : expectedPrevHash,
  };
  return { found, entries: entryList };
}

function pyDatetime(ms) {
  // str() of a UTC datetime as Python prints it: 2036-04-01 00:00:00+00:00
  const d = new Date(ms);
  const iso = d.toISOString();
  const frac = iso.slice(20, 23);
  return iso.slice(0, 10) + " " + iso.slice(11, 19) + (frac !== "000" ? "." + frac + "000" : "") + "+00:00";
}
function pyIso(ms) {
  return pyDatetime(ms).replace(" ", "T");
}

async function pool(items, n, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return results;
}

export async function verifyBucket({ s3, bucket, pem, start = null, end = null, concurrency = 16, requested }) {
  const report = new Report(bucket, requested);
  const keyFp = fingerprint(pem);
  const digestVersions = await s3.versions(bucket, DIGEST_PREFIX);
  report.digestsFound = digestVersions.size;
  const ordered = [...digestVersions.keys()].sort();
  const state = { previous: null };
  const refs = new Map();
  for (const key of ordered) {
    try {
      const versions = digestVersions.get(key);
      const real = versions.filter((v) => !v.deleteMarker);
      if (!real.length) {
        report.problem("digest_missing", key, "only delete markers remain; the digest is gone");
        state.previous = null;
        continue;
      }
      if (versions[versions.length - 1].deleteMarker) report.problem("digest_missing", key, `deleted: a delete marker hides version ${real[0].versionId}`);
      if (real.length > 1)
        report.problem("digest_altered", key, `rewritten: ${real.length} versions; the original is ${real[0].versionId}, newest ${real[real.length - 1].versionId}`);
      const { body: raw } = await s3.get(bucket, key, real[0].versionId, MAX_DIGEST_BYTES);
      const { found } = checkDigest({ key, raw, ordered, keyFp, pem, start, end, report, state });
      for (const r of found) {
        const id = `${r.key}\u0000${r.versionId}`;
        if (!refs.has(id)) refs.set(id, r);
      }
    } catch (err) {
      if (!(err instanceof Malformed) && !(err instanceof TypeError) && !(err instanceof RangeError)) throw err;
      report.problem("malformed", key, err instanceof Malformed ? err.message : `unexpected content (${err.name}: ${String(err.message).slice(0, 200)})`);
      state.previous = null;
    }
  }
  await checkObjects(s3, bucket, [...refs.values()], report, concurrency);
  return report;
}

async function checkObjects(s3, bucket, refs, report, concurrency) {
  report.objectsRequested = refs.length;
  for (const r of refs) (report.byKind[r.kind] ??= { requested: 0, verified: 0 }).requested += 1;
  if (!refs.length) return;
  const listings = new Map();
  for (const r of refs) {
    const b = r.bucket ?? bucket;
    const prefix = r.key.split("/", 1)[0] + "/";
    const id = `${b}\u0000${prefix}`;
    if (!listings.has(id)) listings.set(id, await s3.versions(b, prefix));
  }
  const check = async (r) => {
    const b = r.bucket ?? bucket;
    const problems = [];
    const versions = listings.get(`${b}\u0000${r.key.split("/", 1)[0]}/`).get(r.key) ?? [];
    if (versions.length && versions[versions.length - 1].versionId !== r.versionId) {
      const newest = versions[versions.length - 1];
      if (newest.deleteMarker) problems.push({ kind: "missing", key: r.key, detail: `deleted: a delete marker hides recorded version ${r.versionId}` });
      else problems.push({ kind: "replaced", key: r.key, detail: `recorded version ${r.versionId}, current version ${newest.versionId}` });
    }
    let obj;
    try {
      obj = await s3.get(b, r.key, r.versionId);
    } catch (err) {
      if (!(err instanceof S3Error)) throw err;
      problems.push({ kind: "missing", key: r.key, detail: `recorded version ${r.versionId} cannot be read (${err.code})` });
      return { problems, size: 0 };
    }
    if (obj.sha256 !== r.sha256) problems.push({ kind: "altered", key: r.key, detail: `sha256 is ${obj.sha256}, the ledger recorded ${r.sha256}` });
    const mode = obj.headers["x-amz-object-lock-mode"];
    if (mode !== "COMPLIANCE") problems.push({ kind: "lock", key: r.key, detail: `lock mode is ${mode === undefined ? "None" : `'${mode}'`}, expected 'COMPLIANCE'` });
    const retainHeader = obj.headers["x-amz-object-lock-retain-until-date"];
    const retain = retainHeader ? Date.parse(retainHeader) : null;
    let recorded = null;
    if (r.retainUntil) {
      recorded = parseIsoUtc(r.retainUntil);
      if (recorded === null) problems.push({ kind: "malformed", key: r.key, detail: `ledger entry ${r.seq} records retain-until ${JSON.stringify(String(r.retainUntil).slice(0, 40))}` });
    }
    if (recorded !== null && (retain === null || retain < recorded))
      problems.push({ kind: "lock", key: r.key, detail: `retain-until ${retain === null ? "None" : pyDatetime(retain)} is earlier than recorded ${pyIso(recorded)}` });
    return { problems, size: obj.size };
  };
  const results = await pool(refs, concurrency, check);
  refs.forEach((r, i) => {
    const { problems, size } = results[i];
    report.problems.push(...problems);
    if (!problems.length) {
      report.objectsVerified += 1;
      report.byKind[r.kind].verified += 1;
      report.bytesVerified += size;
    }
  });
}

// ------------------------------------------------------------------------------ packets
// A packet (zip or directory): SHA256SUMS covers every other file; every digest in digests/ is
// checked (signature, entry hashes, Merkle root, the links between consecutive digests it holds);
// every evidence-manifest row is recorded by an authentic digest's ledger entry with the same key,
// version and SHA-256; an evidence object the packet holds (objects/sha256/<hex>.json) re-hashes to
// its name.
function readZip(buf) {
  const files = new Map();
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new UsageError("not a zip file (no end of central directory)");
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new UsageError("zip central directory is damaged");
    const method = buf.readUInt16LE(p + 10);
    const csize = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nameLen).toString("utf8");
    const lNameLen = buf.readUInt16LE(local + 26);
    const lExtraLen = buf.readUInt16LE(local + 28);
    const data = buf.subarray(local + 30 + lNameLen + lExtraLen, local + 30 + lNameLen + lExtraLen + csize);
    if (!name.endsWith("/")) files.set(name, method === 8 ? zlib.inflateRawSync(data) : method === 0 ? Buffer.from(data) : (() => { throw new UsageError(`${name}: zip method ${method} not supported`); })());
    p += 46 + nameLen + extraLen + commentLen;
  }
  return files;
}

function readDir(dir) {
  const files = new Map();
  const walk = (d) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, ent.name);
      if (ent.isDirectory()) walk(full);
      else files.set(path.relative(dir, full).split(path.sep).join("/"), fs.readFileSync(full));
    }
  };
  walk(dir);
  return files;
}

// A packet zip holds its files under one folder named after the packet: look inside it.
function unwrap(files) {
  if (files.has("SHA256SUMS")) return files;
  const roots = new Set([...files.keys()].map((p) => p.split("/", 1)[0]));
  if (roots.size !== 1) return files;
  const [root] = roots;
  return new Map([...files].filter(([p]) => p.startsWith(root + "/")).map(([p, b]) => [p.slice(root.length + 1), b]));
}

export function verifyPacket({ files: given, pem, name }) {
  const files = unwrap(given);
  const report = new Report(name, { from: null, to: null });
  report.sumsSigned = false;
  const keyFp = fingerprint(pem);
  // 1. SHA256SUMS
  const sums = files.get("SHA256SUMS");
  const listed = new Map();
  if (!sums) report.problem("packet_altered", "SHA256SUMS", "missing");
  else {
    for (const line of sums.toString("utf8").split("\n")) {
      if (!line) continue;
      const m = /^([0-9a-f]{64})  (.+)$/.exec(line);
      if (!m) {
        report.problem("packet_altered", "SHA256SUMS", `unreadable line ${JSON.stringify(line.slice(0, 80))}`);
        continue;
      }
      listed.set(m[2], m[1]);
    }
    for (const [p, h] of listed) {
      if (!files.has(p)) report.problem("packet_altered", p, "listed in SHA256SUMS but not in the packet");
      else if (sha256hex(files.get(p)) !== h) report.problem("packet_altered", p, `sha256 is ${sha256hex(files.get(p))}, SHA256SUMS says ${h}`);
    }
    for (const p of files.keys())
      if (p !== "SHA256SUMS" && !listed.has(p) && !p.startsWith("SHA256SUMS")) report.problem("packet_altered", p, "in the packet but not listed in SHA256SUMS");
    // 1b. SHA256SUMS.sig: the signing key's signature over the exact bytes of SHA256SUMS
    const sigRaw = files.get("SHA256SUMS.sig");
    if (!sigRaw) report.problem("bad_signature", "SHA256SUMS.sig", "missing: nothing authenticates SHA256SUMS (the reports' own files)");
    else {
      let sig = null;
      try {
        sig = parseBytes(sigRaw);
        if (!isObj(sig)) throw new Malformed("not a JSON object");
      } catch (err) {
        report.problem("malformed", "SHA256SUMS.sig", err.message);
        sig = null;
      }
      if (sig) {
        const raw = b64decode(sig.signature);
        if (sig.signed !== "SHA256SUMS" || raw === null) report.problem("malformed", "SHA256SUMS.sig", "signed is not \"SHA256SUMS\" or signature is not base64");
        else if (sig.public_key_fingerprint !== keyFp)
          report.problem("bad_signature", "SHA256SUMS.sig", `signed by key ${String(sig.public_key_fingerprint).slice(0, 16)}…, given ${keyFp.slice(0, 16)}…`);
        else if (!verifySignature(pem, typeof sig.algorithm === "string" ? sig.algorithm : "", sums, raw))
          report.problem("bad_signature", "SHA256SUMS.sig", `the ${String(sig.algorithm).slice(0, 40)} signature over SHA256SUMS does not verify with the given key`);
        else report.sumsSigned = true;
      }
    }
  }
  // 2. digests
  const digestPaths = [...files.keys()].filter((p) => /^digests\/[^/]+\.json$/.test(p)).sort();
  report.digestsFound = digestPaths.length;
  const state = { previous: null };
  const recorded = new Map(); // key -> [{versionId, sha256}]
  let manifestRange = [null, null];
  for (const p of digestPaths) {
    const key = p; // digests/<first>-<last>.json, as in the bucket
    try {
      const { found } = checkDigest({ key, raw: files.get(p), ordered: digestPaths, keyFp, pem, start: null, end: null, report, state, inPacket: true });
      for (const r of found) {
        if (!recorded.has(r.key)) recorded.set(r.key, []);
        recorded.get(r.key).push(r);
      }
    } catch (err) {
      if (!(err instanceof Malformed) && !(err instanceof TypeError) && !(err instanceof RangeError)) throw err;
      report.problem("malformed", key, err.message);
      state.previous = null;
    }
  }
  // 3. the evidence manifest against the authentic ledger entries
  const manifestRaw = files.get("evidence-manifest.json");
  if (manifestRaw) {
    let rows;
    try {
      rows = parseBytes(manifestRaw);
      if (!Array.isArray(rows)) throw new Malformed("not a list");
    } catch (err) {
      report.problem("malformed", "evidence-manifest.json", err.message);
      rows = [];
    }
    for (const row of rows) {
      if (!isObj(row) || typeof row.key !== "string") {
        report.problem("malformed", "evidence-manifest.json", "a row without a key");
        continue;
      }
      report.objectsRequested += 1;
      (report.byKind.evidence ??= { requested: 0, verified: 0 }).requested += 1;
      const refs = recorded.get(row.key) ?? [];
      const match = refs.find((r) => r.versionId === row.version_id && r.sha256 === row.sha256);
      if (!match) {
        report.problem(refs.length ? "altered" : "missing", row.key, refs.length ? "the manifest's version or sha256 differs from the ledger entry" : "no authentic ledger entry in this packet's digests records it");
        continue;
      }
      const obj = files.get(row.key);
      if (!obj) {
        report.problem("missing", row.key, "listed in the evidence manifest but the object is not in the packet");
        continue;
      }
      if (sha256hex(obj) !== row.sha256) {
        report.problem("altered", row.key, `sha256 is ${sha256hex(obj)}, the ledger recorded ${row.sha256}`);
        continue;
      }
      report.objectsVerified += 1;
      report.byKind.evidence.verified += 1;
      if (obj) report.bytesVerified += obj.length;
    }
  }
  // 3b. the policy bundles: content-addressed, and recorded by an authentic ledger entry (kind policy)
  for (const p of [...files.keys()].filter((k) => /^policy\/sha256\/[0-9a-f]{64}\.json$/.test(k)).sort()) {
    report.objectsRequested += 1;
    (report.byKind.policy ??= { requested: 0, verified: 0 }).requested += 1;
    const h = sha256hex(files.get(p));
    const named = p.slice("policy/sha256/".length, -".json".length);
    const refs = (recorded.get(p) ?? []).filter((r) => r.kind === "policy");
    if (h !== named) report.problem("altered", p, `sha256 is ${h}, its name says ${named}`);
    else if (!refs.some((r) => r.sha256 === h)) report.problem("missing", p, "no authentic ledger entry in this packet's digests records this policy");
    else {
      report.objectsVerified += 1;
      report.byKind.policy.verified += 1;
      report.bytesVerified += files.get(p).length;
    }
  }
  // 4. the public key named by the packet is the one given
  const packetKey = files.get("public-key.pem");
  if (packetKey && fingerprint(packetKey) !== keyFp)
    report.problem("bad_signature", "public-key.pem", `the packet's key ${fingerprint(packetKey).slice(0, 16)}… is not the key given ${keyFp.slice(0, 16)}…`);
  return report;
}

// ------------------------------------------------------------------------------ command line
function parseArgs(argv) {
  const args = { concurrency: 16, json: false };
  const takes = new Set(["--bucket", "--public-key", "--from", "--to", "--endpoint-url", "--region", "--concurrency", "--packet"]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--json") args.json = true;
    else if (a === "-h" || a === "--help") args.help = true;
    else if (takes.has(a)) {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      args[a.slice(2).replace(/-/g, "_")] = argv[++i];
    } else throw new UsageError(`unknown argument ${a}`);
  }
  return args;
}

function dateArg(name, text) {
  if (text === undefined) return null;
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text) || parseIsoUtc(text) === null) throw new UsageError(`${name} ${text}: not a date (YYYY-MM-DD)`);
  return parseIsoUtc(text);
}

const USAGE = `usage: node verify.mjs --bucket BUCKET --public-key PEM [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--endpoint-url URL] [--region R] [--concurrency N] [--json]
       node verify.mjs --packet PACKET.zip|DIR [--public-key PEM] [--json]`;

export async function main(argv) {
  let args;
  try {
    args = parseArgs(argv);
    if (args.help) {
      console.log(USAGE);
      return 0;
    }
    if (!args.bucket === !args.packet) throw new UsageError("give exactly one of --bucket or --packet");
    let pem;
    const keyPath = args.public_key ?? (args.packet && fs.statSync(args.packet).isDirectory() ? path.join(args.packet, "public-key.pem") : undefined);
    let files = null;
    if (args.packet) files = fs.statSync(args.packet).isDirectory() ? readDir(args.packet) : readZip(fs.readFileSync(args.packet));
    if (keyPath) pem = fs.readFileSync(keyPath);
    else if (files && unwrap(files).has("public-key.pem")) pem = unwrap(files).get("public-key.pem");
    else throw new UsageError("--public-key FILE is required");
    try {
      crypto.createPublicKey(pem);
    } catch {
      throw new UsageError(`${keyPath ?? "public-key.pem"}: not a PEM public key`);
    }
    let report;
    let where;
    if (args.packet) {
      report = verifyPacket({ files, pem, name: path.basename(args.packet) });
      where = `packet ${path.basename(args.packet)} (public key ${fingerprint(pem)})`;
    } else {
      const start = dateArg("--from", args.from);
      const endDay = dateArg("--to", args.to);
      if (start !== null && endDay !== null && start > endDay) throw new UsageError(`--from ${args.from} is after --to ${args.to}: nothing to verify`);
      const end = endDay === null ? null : endDay + 86400000;
      const concurrency = Number(args.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new UsageError(`--concurrency ${args.concurrency}: give 1 to 256`);
      const credentials = { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY, sessionToken: process.env.AWS_SESSION_TOKEN };
      if (!credentials.accessKeyId || !credentials.secretAccessKey) throw new UsageError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set");
      const region = args.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1";
      const endpoint = args.endpoint_url ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
      const s3 = new S3({ endpoint, region, credentials });
      const requested = { from: start === null ? null : pyIso(start), to: end === null ? null : pyIso(end) };
      try {
        report = await verifyBucket({ s3, bucket: args.bucket, pem, start, end, concurrency, requested });
      } catch (err) {
        if (err instanceof S3Error) throw new UsageError(`s3://${args.bucket}: ${err.message}`);
        throw err;
      }
      where = `s3://${args.bucket}`;
    }
    if (args.json) console.log(JSON.stringify(report.toJSON(), null, 2));
    else for (const line of report.summaryLines(where)) console.log(line);
    return report.ok ? 0 : 1;
  } catch (err) {
    if (err instanceof UsageError || err?.code === "ENOENT" || err?.code === "ECONNREFUSED") {
      console.error(`verify.mjs: error: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
