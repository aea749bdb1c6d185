// SDK-HMAC-SHA256 request signing, exactly as the Huawei Cloud SDKs and the
// service's verifier (src/api/auth.rs) do it:
//
//   canonical = METHOD \n canonical URI (with a trailing /) \n canonical query
//               \n "name:value\n" per signed header \n signed names joined by ;
//               \n hex(sha256(body))
//   to sign   = "SDK-HMAC-SHA256" \n X-Sdk-Date \n hex(sha256(canonical))
//   signature = hex(HMAC-SHA256(secret key, to sign))
//
// WebCrypto (crypto.subtle) does the hashing where the browser offers it,
// which is only in a secure context (HTTPS, or http://localhost). Elsewhere
// the small SHA-256 and HMAC below do, so that the secret key still never
// leaves the page; the console then warns that the connection itself is not
// encrypted.

export const ALGORITHM = "SDK-HMAC-SHA256";

const utf8 = new TextEncoder();

// ---- SHA-256 (FIPS 180-4) and HMAC (RFC 2104), for insecure contexts ------

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of a Uint8Array, as a Uint8Array of 32 bytes. */
export function sha256(data) {
  const bitLen = data.length * 8;
  // Message, 0x80, zeros, 64-bit big-endian length: a multiple of 64 bytes.
  const padded = new Uint8Array(((data.length + 9 + 63) >> 6) << 6);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000));
  view.setUint32(padded.length - 4, bitLen >>> 0);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0;
      d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]);
  return out;
}

/** HMAC-SHA256 (RFC 2104) of `msg` under `key`, both Uint8Arrays. */
export function hmacSha256(key, msg) {
  if (key.length > 64) key = sha256(key);
  const block = new Uint8Array(64);
  block.set(key);
  const inner = new Uint8Array(64 + msg.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    inner[i] = block[i] ^ 0x36;
    outer[i] = block[i] ^ 0x5c;
  }
  inner.set(msg, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

export function hex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Whether this page may use WebCrypto (a secure context offers it). */
export function webCryptoAvailable() {
  return Boolean(globalThis.isSecureContext && globalThis.crypto && globalThis.crypto.subtle);
}

// ---- Canonical request ----------------------------------------------------

function isUnreserved(b) {
  return (
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ||
    b === 0x2d || b === 0x5f || b === 0x2e || b === 0x7e
  );
}

/** Percent-encodes bytes: RFC 3986 unreserved characters stay, the rest %XX. */
export function encodeBytes(bytes) {
  let s = "";
  for (const b of bytes) {
    s += isUnreserved(b) ? String.fromCharCode(b) : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return s;
}

/** Percent-encodes a string's UTF-8 bytes, as the server re-encodes. */
export function encode(s) {
  return encodeBytes(utf8.encode(s));
}

const HEX = /^[0-9a-fA-F]{2}$/;

/** Decodes %XX sequences into bytes; a % not followed by two hex digits
 *  stays itself (as Rust's percent_decode_str does). */
function percentDecode(s) {
  const raw = utf8.encode(s);
  const out = [];
  for (let i = 0; i < raw.length; i++) {
    const pair = String.fromCharCode(raw[i + 1] ?? 0, raw[i + 2] ?? 0);
    if (raw[i] === 0x25 && i + 2 < raw.length && HEX.test(pair)) {
      out.push(parseInt(pair, 16));
      i += 2;
    } else {
      out.push(raw[i]);
    }
  }
  return Uint8Array.from(out);
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Each path segment decoded then re-encoded, with a trailing slash. */
export function canonicalUri(path) {
  let out = path.split("/").map((seg) => encodeBytes(percentDecode(seg))).join("/");
  if (!out.endsWith("/")) out += "/";
  return out;
}

/** Pairs decoded, sorted by key then value (as bytes), re-encoded. */
export function canonicalQuery(query) {
  const pairs = (query || "")
    .split("&")
    .filter((p) => p !== "")
    .map((p) => {
      const at = p.indexOf("=");
      const [k, v] = at < 0 ? [p, ""] : [p.slice(0, at), p.slice(at + 1)];
      return [percentDecode(k), percentDecode(v)];
    });
  pairs.sort((x, y) => compareBytes(x[0], y[0]) || compareBytes(x[1], y[1]));
  return pairs.map(([k, v]) => `${encodeBytes(k)}=${encodeBytes(v)}`).join("&");
}

/** `yyyyMMddTHHmmssZ` of a Date, in UTC. */
export function sdkDate(d) {
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return (
    `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}` +
    `T${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`
  );
}

// ---- The signer -------------------------------------------------------------

/**
 * Holds one credential and signs requests with it. With WebCrypto the
 * secret key is imported once as a non-extractable key and the string is
 * not kept; without, its bytes stay in this object only.
 */
export class Signer {
  /** `mode`: "auto" (WebCrypto when available), "webcrypto" or "js". */
  static async create(ak, sk, mode = "auto") {
    const useSubtle = mode === "webcrypto" || (mode === "auto" && webCryptoAvailable());
    if (useSubtle && !webCryptoAvailable()) throw new Error("WebCrypto is not available on this page");
    const s = new Signer(ak, useSubtle ? "webcrypto" : "js");
    if (useSubtle) {
      s.key = await crypto.subtle.importKey(
        "raw", utf8.encode(sk), { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
      );
    } else {
      s.key = utf8.encode(sk);
    }
    return s;
  }

  constructor(ak, mode) {
    this.ak = ak;
    this.mode = mode;
    this.key = null;
  }

  async sha256Hex(bytes) {
    if (this.mode === "webcrypto") return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
    return hex(sha256(bytes));
  }

  async hmacHex(msg) {
    const bytes = utf8.encode(msg);
    if (this.mode === "webcrypto") return hex(new Uint8Array(await crypto.subtle.sign("HMAC", this.key, bytes)));
    return hex(hmacSha256(this.key, bytes));
  }

  /** The string the server rebuilds and checks; `headers` are sorted
   *  [name, value] pairs with lower-case names. */
  async stringToSign(method, path, query, headers, body, date) {
    const canonical = [
      method.toUpperCase(),
      canonicalUri(path),
      canonicalQuery(query),
      headers.map(([k, v]) => `${k}:${v}\n`).join(""),
      headers.map(([k]) => k).join(";"),
      await this.sha256Hex(utf8.encode(body || "")),
    ].join("\n");
    return `${ALGORITHM}\n${date}\n${await this.sha256Hex(utf8.encode(canonical))}`;
  }

  /**
   * The headers of a signed request, as `dcs-backup dev sign` prints them:
   * content-type, host, x-sdk-date (signed, in that order) and
   * authorization. `query` is the raw query string without `?`.
   */
  async headers({ method, path, query = "", host, body = "", date = new Date() }) {
    const when = typeof date === "string" ? date : sdkDate(date);
    const headers = [
      ["content-type", "application/json"],
      ["host", host],
      ["x-sdk-date", when],
    ];
    const sts = await this.stringToSign(method, path, query, headers, body, when);
    const signature = await this.hmacHex(sts);
    const names = headers.map(([k]) => k).join(";");
    headers.push(["authorization", `${ALGORITHM} Access=${this.ak}, SignedHeaders=${names}, Signature=${signature}`]);
    return headers;
  }
}
