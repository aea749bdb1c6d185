// The signed API client the pages use: every call goes to this origin's
// /v2/{project_id}/… and is signed in the page (sign.js). Errors come back
// as ApiError with the DCS code and message the service answered.

import { Signer, encode } from "./sign.js";

export class ApiError extends Error {
  constructor(status, code, message, ext) {
    super(message);
    this.status = status;
    this.code = code;
    this.ext = ext || "";
  }

  /** One line for the operator: what went wrong, with the DCS code. */
  describe() {
    const ext = this.ext ? ` (${this.ext})` : "";
    return this.code ? `${this.message}${ext} [${this.code}]` : `${this.message}${ext}`;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Builds a query string from an object, skipping empty values. */
export function queryString(params) {
  return Object.entries(params || {})
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${encode(k)}=${encode(String(v))}`)
    .join("&");
}

export class Client {
  /** Signs in: builds the signer and checks the credential against the
   *  service with one read. Throws ApiError on a refusal. */
  static async connect({ projectId, ak, sk, mode = "auto" }) {
    const signer = await Signer.create(ak, sk, mode);
    const client = new Client(projectId, signer);
    await client.learnClock();
    await client.get("/instances", { limit: 1 });
    return client;
  }

  constructor(projectId, signer) {
    this.projectId = projectId;
    this.signer = signer;
    this.clockOffset = 0;
    this.lastMutation = new Map();
  }

  /** The service refuses dates 15 minutes off its clock. Learn its clock
   *  from /health's Date header, so a computer whose clock is wrong can
   *  still sign; the signature still covers the date sent. */
  async learnClock() {
    try {
      const before = Date.now();
      const r = await fetch("/health", { cache: "no-store", credentials: "omit" });
      const served = Date.parse(r.headers.get("date") || "");
      if (!Number.isNaN(served)) {
        const offset = served + 500 - (before + Date.now()) / 2;
        this.clockOffset = Math.abs(offset) > 60_000 ? offset : 0;
      }
    } catch {
      // The sign-in request itself reports an unreachable service.
    }
  }

  get mode() {
    return this.signer.mode;
  }

  get(path, query) {
    return this.request("GET", path, { query });
  }

  post(path, body) {
    return this.request("POST", path, { body });
  }

  put(path, body) {
    return this.request("PUT", path, { body });
  }

  del(path) {
    return this.request("DELETE", path, {});
  }

  /** A call under /v3/{project_id} (the GeminiDB-shaped PITR API). */
  v3(method, path, { query, body } = {}) {
    return this.request(method, path, { query, body, version: "v3" });
  }

  /** One signed call under /v2/{project_id} (or `version`). Answers the
   *  parsed JSON body, or null for 204. */
  async request(method, path, { query, body, version = "v2" } = {}) {
    const fullPath = `/${version}/${encode(this.projectId)}${path}`;
    const qs = queryString(query);
    const text = body === undefined ? "" : JSON.stringify(body);
    // The service accepts a mutating request's signature once, and the
    // date is signed to the second: the same change twice within a second
    // would be the same request. Wait for the next second instead.
    if (method !== "GET") {
      const key = `${method} ${fullPath} ${text}`;
      const second = Math.floor((Date.now() + this.clockOffset) / 1000);
      if (this.lastMutation.get(key) === second) await sleep(1000 - ((Date.now() + this.clockOffset) % 1000) + 5);
      this.lastMutation.set(key, Math.floor((Date.now() + this.clockOffset) / 1000));
      if (this.lastMutation.size > 200) this.lastMutation.clear();
    }
    const headers = await this.signer.headers({
      method,
      path: fullPath,
      query: qs,
      host: location.host,
      body: text,
      date: new Date(Date.now() + this.clockOffset),
    });
    const send = new Headers();
    for (const [k, v] of headers) if (k !== "host") send.set(k, v);
    let resp;
    try {
      resp = await fetch(qs ? `${fullPath}?${qs}` : fullPath, {
        method,
        headers: send,
        body: method === "GET" ? undefined : text,
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new ApiError(0, "", "The service could not be reached. Is it running, and is this the right address?");
    }
    if (resp.status === 204) return null;
    const raw = await resp.text();
    let json = null;
    try {
      json = raw ? JSON.parse(raw) : null;
    } catch {
      json = null;
    }
    if (!resp.ok) {
      if (json && json.error_code) throw new ApiError(resp.status, json.error_code, json.error_msg || "", json.error_ext_msg);
      throw new ApiError(resp.status, "", `The service answered HTTP ${resp.status} ${resp.statusText}`.trim());
    }
    return json;
  }
}
