// The console's pages: sign-in, the instance list, an instance with its
// backup and restore records and its point-in-time recovery panel, and
// the dialogs (back up now, restore with a dry-run plan, download links,
// backup policy). Everything the API says is
// put in the page as text (never as HTML).

import { ApiError, Client } from "./api.js";
import { webCryptoAvailable } from "./sign.js";
import * as fmt from "./format.js";

const $ = (sel, root = document) => root.querySelector(sel);

/** Creates an element: h("td", {class: "x"}, "text", child, …). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function describe(e) {
  if (e instanceof ApiError) return e.describe();
  return String((e && e.message) || e);
}

const PAGE = 20;
const POLL_MS = 1500;
const IDLE_MS = 15000;

const state = {
  client: null,
  instances: [],
  pollTimer: null,
  view: null,
};

// ---- Toasts -----------------------------------------------------------------

let toastTimer = null;
function toast(text, kind = "ok") {
  const t = $("#toast");
  t.textContent = text;
  t.className = `toast ${kind}`;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 5000);
}

// ---- Sign-in ----------------------------------------------------------------

const SIGNIN_WORDS = {
  "DCS.1001": "The access key or secret key is not right.",
  "DCS.1002": "This computer's clock is more than 15 minutes away from the service's.",
  "DCS.1004": "This access key belongs to another project: check the project ID.",
};

function showSignin(message) {
  stopPolling();
  state.client = null;
  state.view = null;
  $("#session").hidden = true;
  $("#view").hidden = true;
  $("#view").replaceChildren();
  $("#signin").hidden = false;
  $("#signin-sk").value = "";
  $("#signin-json").value = "";
  const err = $("#signin-error");
  err.hidden = !message;
  err.textContent = message || "";
  document.title = "Sign in · dcs-backup console";
  const first = ["#signin-project", "#signin-ak", "#signin-sk"].map((s) => $(s)).find((i) => !i.value);
  (first || $("#signin-sk")).focus();
}

function fillFromJson() {
  const raw = $("#signin-json").value.trim();
  if (!raw) return true;
  try {
    const c = JSON.parse(raw);
    if (typeof c !== "object" || !c) throw new Error();
    if (c.project_id) $("#signin-project").value = String(c.project_id);
    if (c.ak) $("#signin-ak").value = String(c.ak);
    if (c.sk) $("#signin-sk").value = String(c.sk);
    $("#signin-json").value = "";
    return true;
  } catch {
    return false;
  }
}

async function signIn(ev) {
  ev.preventDefault();
  const err = $("#signin-error");
  err.hidden = true;
  if (!fillFromJson()) {
    err.textContent = "That is not the JSON of a credentials file: {\"project_id\", \"ak\", \"sk\"}.";
    err.hidden = false;
    return;
  }
  const projectId = $("#signin-project").value.trim();
  const ak = $("#signin-ak").value.trim();
  const sk = $("#signin-sk").value;
  if (!projectId || !ak || !sk) {
    err.textContent = "Project ID, access key and secret key are all needed.";
    err.hidden = false;
    return;
  }
  const button = $("#signin-submit");
  button.disabled = true;
  button.textContent = "Signing in…";
  try {
    const mode = new URLSearchParams(location.search).get("signer") === "js" ? "js" : "auto";
    state.client = await Client.connect({ projectId, ak, sk, mode });
    $("#signin-sk").value = "";
    // Only what identifies the account, never the secret, for a reload.
    sessionStorage.setItem("dcs-console-id", JSON.stringify({ projectId, ak }));
    $("#signin").hidden = true;
    $("#session").hidden = false;
    $("#session-project").textContent = projectId;
    $("#view").hidden = false;
    route();
  } catch (e) {
    state.client = null;
    const words = e instanceof ApiError && SIGNIN_WORDS[e.code];
    err.textContent = words ? `${words} The service said: ${e.describe()}` : `Could not sign in: ${describe(e)}`;
    err.hidden = false;
    $("#signin-sk").focus();
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
}

function signOut() {
  sessionStorage.removeItem("dcs-console-id");
  $("#signin-project").value = "";
  $("#signin-ak").value = "";
  location.hash = "#/";
  closeDialog();
  showSignin("");
}

// ---- Routing ----------------------------------------------------------------

function stopPolling() {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
}

function route() {
  if (!state.client) return;
  stopPolling();
  closeDialog();
  const m = location.hash.match(/^#\/instances\/([^/?]+)/);
  if (m) instancePage(decodeURIComponent(m[1]));
  else instancesPage();
}

/** Shows an error in place of a page, with the way back. */
function pageError(e) {
  const view = $("#view");
  const again = e instanceof ApiError && e.status === 401;
  view.replaceChildren(
    h("div", { class: "card error-card", role: "alert" },
      h("h2", {}, "Something went wrong"),
      h("p", { class: "error" }, describe(e)),
      again
        ? h("button", { class: "primary", onclick: () => showSignin("Your credential was refused; sign in again.") }, "Sign in again")
        : h("a", { href: "#/", class: "button" }, "Back to instances")),
  );
}

// ---- Instance list ----------------------------------------------------------

function statusBadge(status) {
  const up = status === "RUNNING";
  return h("span", { class: `reach ${up ? "up" : "down"}`, title: up ? "The service reaches this server" : "The service cannot reach this server" },
    up ? "reachable" : "unreachable");
}

async function loadInstances() {
  const r = await state.client.get("/instances", { limit: 1000 });
  state.instances = (r && r.instances) || [];
  return state.instances;
}

async function instancesPage() {
  const token = (state.view = {});
  document.title = "Instances · dcs-backup console";
  const view = $("#view");
  view.replaceChildren(h("p", { class: "muted" }, "Loading instances…"));
  let list;
  try {
    list = await loadInstances();
  } catch (e) {
    if (state.view === token) pageError(e);
    return;
  }
  if (state.view !== token) return;
  const rows = list.map((i) =>
    h("tr", { "data-instance-id": i.instance_id },
      h("td", {}, h("a", { href: `#/instances/${encodeURIComponent(i.instance_id)}`, class: "strong" }, i.name),
        i.description ? h("div", { class: "muted small" }, i.description) : null),
      h("td", { class: "mono" }, `${i.ip}:${i.port}`, i.enable_ssl ? h("span", { class: "tag" }, "TLS") : null),
      h("td", {}, fmt.topology(i)),
      h("td", {}, fmt.engine(i)),
      h("td", {}, statusBadge(i.status)),
      h("td", { class: "small" }, fmt.policy(i))));
  view.replaceChildren(
    h("div", { class: "page-head" },
      h("h1", {}, "Instances", h("span", { class: "count" }, String(list.length))),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: () => instancesPage() }, "Refresh"))),
    list.length
      ? h("table", { class: "grid", id: "instances" },
        h("thead", {}, h("tr", {}, ["Name", "Address", "Topology", "Engine", "Status", "Backup policy"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows))
      : h("div", { class: "card empty" },
        h("p", {}, "No instances in this project yet."),
        h("p", { class: "muted" }, "Adopt a Redis or Valkey server with ", h("code", {}, "dcs-backup instance add NAME --address HOST:PORT"),
          " or the API's POST /v2/{project_id}/instances.")),
  );
}

// ---- Instance page ------------------------------------------------------------

async function instancePage(id) {
  const token = (state.view = { id, tab: "backups", filter: {}, offset: { backups: 0, restores: 0 } });
  const view = $("#view");
  view.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  let inst;
  try {
    inst = await state.client.get(`/instances/${encodeURIComponent(id)}`);
  } catch (e) {
    if (state.view === token) pageError(e);
    return;
  }
  if (state.view !== token) return;
  token.inst = inst;
  document.title = `${inst.name} · dcs-backup console`;
  renderInstance(token);
  refreshRecords(token);
}

function renderInstance(v) {
  const inst = v.inst;
  const shards = (inst.shards || []).map((s, n) =>
    h("tr", {},
      h("td", {}, inst.cache_mode === "cluster" ? `Shard ${n + 1}` : "Master"),
      h("td", { class: "mono" }, s.master),
      h("td", { class: "mono" }, s.replicas.length ? s.replicas.join(", ") : "none"),
      h("td", { class: "mono" }, s.slots.join(" ") || "")));
  const filterBar = h("form", { class: "filters", id: "filters", novalidate: true, onsubmit: (ev) => { ev.preventDefault(); applyFilter(v); } },
    h("label", {}, "From ", h("input", { type: "datetime-local", id: "filter-begin" })),
    h("label", {}, "to ", h("input", { type: "datetime-local", id: "filter-end" })),
    h("button", { type: "submit" }, "Apply"),
    h("button", { type: "button", class: "quiet", onclick: () => { $("#filter-begin").value = ""; $("#filter-end").value = ""; applyFilter(v); } }, "Clear"),
    h("span", { class: "muted small" }, `Times in your time zone, ${fmt.localZone()}`));
  $("#view").replaceChildren(
    h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Instances"), " / ", inst.name),
    h("div", { class: "page-head" },
      h("h1", {}, inst.name, statusBadge(inst.status)),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "primary", id: "backup-now", onclick: () => backupDialog(v) }, "Back up now"),
        h("button", { type: "button", id: "restore-open", onclick: () => restoreDialog(v, null) }, "Restore…"),
        h("button", { type: "button", id: "policy-open", onclick: () => policyDialog(v) }, "Backup policy…"))),
    h("div", { class: "summary card" },
      h("dl", {},
        h("dt", {}, "Address"), h("dd", { class: "mono" }, `${inst.ip}:${inst.port}`, inst.enable_ssl ? " (TLS)" : ""),
        h("dt", {}, "Topology"), h("dd", {}, fmt.topology(inst)),
        h("dt", {}, "Engine"), h("dd", {}, fmt.engine(inst)),
        h("dt", {}, "Backup policy"), h("dd", { id: "policy-summary" }, fmt.policy(inst)),
        h("dt", {}, "Instance ID"), h("dd", { class: "mono" }, inst.instance_id),
        h("dt", {}, "Adopted"), h("dd", {}, fmt.time(inst.created_at))),
      inst.cache_mode !== "single" && shards.length
        ? h("table", { class: "grid compact" },
          h("thead", {}, h("tr", {}, ["", "Master", "Replicas", "Slots"].map((t) => h("th", {}, t)))),
          h("tbody", {}, shards))
        : null),
    h("section", { class: "card pitr", id: "pitr-panel" }, h("p", { class: "muted" }, "Loading point-in-time recovery…")),
    h("div", { class: "tabs", role: "tablist" },
      h("button", { type: "button", role: "tab", id: "tab-backups", onclick: () => switchTab(v, "backups") }, "Backups"),
      h("button", { type: "button", role: "tab", id: "tab-restores", onclick: () => switchTab(v, "restores") }, "Restores")),
    filterBar,
    h("div", { id: "records" }),
  );
  markTab(v);
  renderPitr(v);
}

function markTab(v) {
  for (const t of ["backups", "restores"]) {
    const b = $(`#tab-${t}`);
    if (b) b.setAttribute("aria-selected", String(v.tab === t));
  }
}

function switchTab(v, tab) {
  v.tab = tab;
  markTab(v);
  refreshRecords(v);
}

function applyFilter(v) {
  const begin = fmt.compactUtc($("#filter-begin").value);
  const end = fmt.compactUtc($("#filter-end").value, true);
  v.filter = { begin_time: begin, end_time: end };
  v.offset = { backups: 0, restores: 0 };
  refreshRecords(v);
}

/** Loads the visible tab's page, and both lists' first records to know
 *  whether a job is running; polls while one is. */
async function refreshRecords(v) {
  if (state.view !== v) return;
  clearTimeout(state.pollTimer);
  const base = `/instances/${encodeURIComponent(v.id)}`;
  const query = { offset: v.offset[v.tab], limit: PAGE, ...v.filter };
  let page;
  let active;
  const other = v.tab === "backups" ? "restores" : "backups";
  try {
    const path = `${base}/${v.tab}`;
    const [mine, theirs] = await Promise.all([
      state.client.get(path, query),
      state.client.get(`${base}/${other}`, { limit: 5 }),
    ]);
    page = mine || { total_num: 0 };
    const otherTotal = theirs ? theirs.total_num || 0 : 0;
    const items = (r) => (r && (r.backup_record_response || r.restore_record_response)) || [];
    active = [...items(page), ...items(theirs)].some((r) => fmt.isActive(r.status));
    v.totals = { [v.tab]: page.total_num || 0, [other]: otherTotal };
  } catch (e) {
    if (state.view !== v) return;
    const box = $("#records");
    if (box) box.replaceChildren(h("p", { class: "error", role: "alert" }, `Could not load the ${v.tab}: ${describe(e)}`));
    state.pollTimer = setTimeout(() => refreshRecords(v), 5000);
    return;
  }
  if (state.view !== v) return;
  renderRecords(v, page);
  // Every 1.5 s while a job is waiting or running; else now and then, to
  // see scheduled backups and jobs started elsewhere.
  state.pollTimer = setTimeout(() => refreshRecords(v), active ? POLL_MS : IDLE_MS);
}

function progressCell(r, sizeKnown) {
  const pct = Number(r.progress) || 0;
  const bits = [h("progress", { max: "100", value: String(pct) }), h("span", { class: "pct" }, `${pct.toFixed(0)} %`)];
  if (sizeKnown) bits.push(h("span", { class: "muted small" }, fmt.bytes(r.size)));
  return h("div", { class: "live" }, bits);
}

function statusCell(r, sizeKnown) {
  const word = fmt.STATUS_WORDS[r.status] || r.status;
  const badge = h("span", { class: `status s-${r.status}`, "data-status": r.status }, word);
  if (r.status === "backuping" || r.status === "restoring") return h("td", {}, badge, progressCell(r, sizeKnown));
  if (r.status === "failed" && (r.error_code || r.reason)) {
    return h("td", {}, badge, h("div", { class: "small error" }, [r.error_code, r.reason].filter(Boolean).join(": ")));
  }
  return h("td", {}, badge);
}

function elapsed(start, r) {
  if (!start) return "";
  const end = fmt.isActive(r.status) ? Date.now() : new Date(r.updated_at).getTime();
  return fmt.duration((end - new Date(start).getTime()) / 1000);
}

function renderRecords(v, page) {
  const box = $("#records");
  if (!box) return;
  const tabB = $("#tab-backups");
  const tabR = $("#tab-restores");
  if (v.totals && v.totals.backups !== undefined) tabB.textContent = `Backups (${v.totals.backups})`;
  if (v.totals && v.totals.restores !== undefined) tabR.textContent = `Restores (${v.totals.restores})`;
  const total = page.total_num || 0;
  const offset = v.offset[v.tab];
  let table;
  if (v.tab === "backups") {
    const items = page.backup_record_response || [];
    table = h("table", { class: "grid", id: "backups" },
      h("thead", {}, h("tr", {}, ["Backup", "Type", "Status", "Size", "Created", "Took", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, items.map((b) =>
        h("tr", { "data-backup-id": b.backup_id },
          h("td", {}, h("div", { class: "mono" }, b.backup_name), b.remark ? h("div", { class: "muted small" }, b.remark) : null),
          h("td", {}, `${b.backup_type} · ${b.backup_format}`),
          statusCell(b, true),
          h("td", { class: "num" }, b.status === "succeed" ? fmt.bytes(b.size) : ""),
          h("td", {}, fmt.time(b.created_at)),
          h("td", {}, elapsed(b.execution_at, b)),
          h("td", { class: "row-actions" },
            b.status === "succeed"
              ? [h("button", { type: "button", class: "small-btn", "data-action": "download", onclick: () => downloadDialog(v, b) }, "Download"),
                h("button", { type: "button", class: "small-btn", "data-action": "restore", onclick: () => restoreDialog(v, b) }, "Restore…")]
              : null)))));
  } else {
    const items = page.restore_record_response || [];
    table = h("table", { class: "grid", id: "restores" },
      h("thead", {}, h("tr", {}, ["Restore", "From backup", "Status", "Created", "Took"].map((t) => h("th", {}, t)))),
      h("tbody", {}, items.map((r) =>
        h("tr", { "data-restore-id": r.restore_id },
          h("td", {}, h("div", { class: "mono" }, r.restore_name), r.restore_remark ? h("div", { class: "muted small" }, r.restore_remark) : null),
          h("td", {}, h("div", { class: "mono" }, r.backup_name), r.backup_remark ? h("div", { class: "muted small" }, r.backup_remark) : null),
          statusCell(r, false),
          h("td", {}, fmt.time(r.created_at)),
          h("td", {}, elapsed(r.created_at, r))))));
  }
  const empty = total === 0
    ? h("p", { class: "muted empty-row" }, v.filter.begin_time || v.filter.end_time
      ? `No ${v.tab} in this time range.`
      : v.tab === "backups" ? "No backups yet. “Back up now” takes one." : "No restores yet.")
    : null;
  const last = Math.min(offset + PAGE, total);
  const pager = h("div", { class: "pager" },
    h("span", { class: "muted" }, total ? `${offset + 1}–${last} of ${total}` : ""),
    h("button", { type: "button", id: "page-prev", disabled: offset === 0, onclick: () => { v.offset[v.tab] = Math.max(0, offset - PAGE); refreshRecords(v); } }, "‹ Newer"),
    h("button", { type: "button", id: "page-next", disabled: last >= total, onclick: () => { v.offset[v.tab] = offset + PAGE; refreshRecords(v); } }, "Older ›"));
  box.replaceChildren(empty || table, total ? pager : "");
}

// ---- Dialogs ------------------------------------------------------------------

function openDialog(title, ...body) {
  const d = $("#dialog");
  d.replaceChildren(
    h("div", { class: "dialog-head" }, h("h2", {}, title),
      h("button", { type: "button", class: "quiet close", "aria-label": "Close", onclick: closeDialog }, "×")),
    ...body);
  d.className = "";
  if (!d.open) d.showModal();
  return d;
}

function closeDialog() {
  const d = $("#dialog");
  if (d && d.open) d.close();
}

function errorLine(id) {
  return h("p", { class: "error", id, role: "alert", hidden: true });
}

function showError(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

function backupDialog(v) {
  const err = errorLine("backup-error");
  const submit = h("button", { type: "submit", class: "primary", id: "backup-start" }, "Start backup");
  const form = h("form", { id: "backup-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    showError(err, "");
    const format = form.querySelector("input[name=format]:checked").value;
    const remark = form.querySelector("#backup-remark").value;
    try {
      const r = await state.client.post(`/instances/${encodeURIComponent(v.id)}/backups`, { backup_format: format, remark });
      closeDialog();
      toast(`Backup started (${r.backup_id}).`);
      v.tab = "backups";
      v.offset.backups = 0;
      markTab(v);
      refreshRecords(v);
    } catch (e) {
      showError(err, `The backup was not started: ${describe(e)}`);
      submit.disabled = false;
    }
  } },
  h("fieldset", {}, h("legend", {}, "Format"),
    h("label", { class: "choice" }, h("input", { type: "radio", name: "format", value: "rdb", checked: true }),
      h("span", {}, h("strong", {}, "RDB"), " — the snapshot as Redis writes it; loads into any compatible server.")),
    h("label", { class: "choice" }, h("input", { type: "radio", name: "format", value: "aof" }),
      h("span", {}, h("strong", {}, "AOF"), " — the same snapshot as a command stream (redis-check-aof accepts it)."))),
  h("label", {}, "Remark (optional, up to 128 characters)", h("input", { id: "backup-remark", maxlength: "128" })),
  err,
  h("div", { class: "dialog-actions" }, h("button", { type: "button", onclick: closeDialog }, "Cancel"), submit));
  openDialog(`Back up ${v.inst.name} now`, form);
  form.querySelector("#backup-remark").focus();
}

async function downloadDialog(v, b) {
  const body = h("div", { id: "download-body" }, h("p", { class: "muted" }, "Asking for links…"));
  openDialog(`Download ${b.backup_name}`, body);
  const expiration = 3600;
  try {
    const r = await state.client.post(`/instances/${encodeURIComponent(v.id)}/backups/${encodeURIComponent(b.backup_id)}/links`, { expiration });
    const until = new Date(Date.now() + expiration * 1000);
    body.replaceChildren(
      h("p", {}, `${r.links.length} file${r.links.length === 1 ? "" : "s"}; the links work until ${fmt.time(until.toISOString())} (one hour).`),
      h("ul", { class: "links" }, r.links.map((l) =>
        h("li", {}, /^https?:\/\//i.test(l.link)
          ? h("a", { href: l.link, download: l.file_name, rel: "noreferrer" }, l.file_name)
          : l.file_name))),
      r.file_path ? h("p", { class: "muted small" }, "In the store at ", h("code", {}, r.bucket_name ? `${r.bucket_name}/${r.file_path}` : r.file_path)) : null,
      h("div", { class: "dialog-actions" }, h("button", { type: "button", onclick: closeDialog }, "Close")));
  } catch (e) {
    body.replaceChildren(h("p", { class: "error", role: "alert" }, `No links: ${describe(e)}`),
      h("div", { class: "dialog-actions" }, h("button", { type: "button", onclick: closeDialog }, "Close")));
  }
}

// ---- Restore: choose, dry run, confirm by name --------------------------------

async function restoreDialog(v, preset) {
  const target = v.inst;
  const err = errorLine("restore-error");
  const sourceSel = h("select", { id: "restore-source" });
  const backupSel = h("select", { id: "restore-backup", required: true });
  const remark = h("input", { id: "restore-remark", maxlength: "128" });
  const check = h("button", { type: "submit", class: "primary", id: "restore-check" }, "Check the plan");
  const planBox = h("div", { id: "restore-plan" });

  let instances = state.instances;
  try {
    instances = await loadInstances();
  } catch {
    instances = state.instances.length ? state.instances : [target];
  }
  for (const i of instances) {
    sourceSel.append(h("option", { value: i.instance_id, selected: i.instance_id === target.instance_id }, i.instance_id === target.instance_id ? `${i.name} (this instance)` : i.name));
  }

  async function loadBackups() {
    backupSel.replaceChildren(h("option", { value: "" }, "Loading…"));
    planBox.replaceChildren();
    try {
      const r = await state.client.get(`/instances/${encodeURIComponent(sourceSel.value)}/backups`, { limit: 100 });
      const ok = ((r && r.backup_record_response) || []).filter((b) => b.status === "succeed");
      backupSel.replaceChildren(...(ok.length
        ? ok.map((b) => h("option", { value: b.backup_id, selected: preset && preset.backup_id === b.backup_id },
          `${b.backup_name} · ${b.backup_format} · ${fmt.bytes(b.size)}${b.remark ? ` · ${b.remark}` : ""}`))
        : [h("option", { value: "" }, "No succeeded backup of this instance")]));
    } catch (e) {
      backupSel.replaceChildren(h("option", { value: "" }, "—"));
      showError(err, `Could not list the backups: ${describe(e)}`);
    }
  }
  sourceSel.addEventListener("change", loadBackups);
  backupSel.addEventListener("change", () => planBox.replaceChildren());

  const form = h("form", { id: "restore-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    showError(err, "");
    if (!backupSel.value) {
      showError(err, "Choose a backup first.");
      return;
    }
    check.disabled = true;
    planBox.replaceChildren(h("p", { class: "muted" }, "Reading the backup back and the target's facts (nothing is written)…"));
    try {
      const plan = await state.client.post(`/instances/${encodeURIComponent(target.instance_id)}/restores`, {
        backup_id: backupSel.value, remark: remark.value, dry_run: true,
      });
      renderPlan(v, planBox, plan, backupSel.value, remark.value);
    } catch (e) {
      planBox.replaceChildren();
      showError(err, `The plan could not be made: ${describe(e)}`);
    } finally {
      check.disabled = false;
    }
  } },
  h("div", { class: "restore-pick" },
    h("label", {}, "Backups of", sourceSel),
    h("label", {}, "Backup", backupSel),
    h("label", {}, "Remark (optional)", remark)),
  err,
  h("div", { class: "dialog-actions" }, h("button", { type: "button", onclick: closeDialog }, "Cancel"), check));
  openDialog(`Restore into ${target.name}`, form, planBox).classList.add("wide");
  await loadBackups();
}

const PATH_WORDS = {
  feed: "Replication feed: the target loads the backup's RDB itself, as a replica of the service, then becomes a master again.",
  slicing: "Slicing: the target is emptied, then every key is sent as a RESTORE command, pipelined.",
};

function renderPlan(v, box, plan, backupId, remarkText) {
  const target = v.inst;
  const targets = plan.targets || [];
  const maxmem = targets.reduce((a, t) => a + (Number(t.maxmemory) || 0), 0);
  const parts = [];
  if (!plan.accepted) {
    parts.push(h("div", { class: "plan refused", role: "alert" },
      h("h3", {}, "This restore would be refused"),
      h("p", {}, plan.refusal || "The plan refused it."),
      plan.error_code ? h("p", { class: "muted small" }, `It would be recorded as failed with ${plan.error_code}; nothing was written.`) : null));
  } else {
    parts.push(h("div", { class: "plan accepted" },
      h("h3", {}, "Plan"),
      h("p", {}, PATH_WORDS[plan.path] || plan.path)));
  }
  parts.push(h("dl", { class: "facts" },
    h("dt", {}, "Keys"), h("dd", {}, Number(plan.keys).toLocaleString("en")),
    h("dt", {}, "Memory once loaded"), h("dd", {}, `about ${fmt.bytes(plan.memory_estimate)}${maxmem ? ` (maxmemory ${fmt.bytes(maxmem)})` : " (no maxmemory set)"}`),
    h("dt", {}, "Estimated time"), h("dd", {}, fmt.duration(plan.estimated_seconds || 0)),
    h("dt", {}, "Databases"), h("dd", {}, (plan.databases || []).map((d) => `db${d.db}: ${Number(d.keys).toLocaleString("en")} keys, ${fmt.bytes(d.bytes)} of values`).join("; ") || "none")));
  if (targets.length) {
    parts.push(h("table", { class: "grid compact" },
      h("thead", {}, h("tr", {}, ["Target", "Server", "RDB", "Used memory", "maxmemory"].map((t) => h("th", {}, t)))),
      h("tbody", {}, targets.map((t) => h("tr", {},
        h("td", { class: "mono" }, t.address), h("td", {}, `${t.engine} ${t.version}`), h("td", {}, String(t.rdb_version)),
        h("td", {}, fmt.bytes(t.used_memory)), h("td", {}, t.maxmemory ? fmt.bytes(t.maxmemory) : "unlimited"))))));
  }
  if ((plan.decisions || []).length) {
    parts.push(h("details", { class: "decisions", open: true }, h("summary", {}, "What the plan decided"),
      h("ul", {}, plan.decisions.map((d) => h("li", {}, d)))));
  }
  if (plan.accepted) {
    const typed = h("input", { id: "restore-confirm-name", autocomplete: "off", spellcheck: "false" });
    const go = h("button", { type: "button", class: "danger", id: "restore-start", disabled: true }, "Replace the data and restore");
    const err = errorLine("restore-start-error");
    typed.addEventListener("input", () => (go.disabled = typed.value !== target.name));
    go.addEventListener("click", async () => {
      if (typed.value !== target.name) return;
      go.disabled = true;
      showError(err, "");
      try {
        const r = await state.client.post(`/instances/${encodeURIComponent(target.instance_id)}/restores`, { backup_id: backupId, remark: remarkText });
        closeDialog();
        toast(`Restore started (${r.restore_id}).`);
        v.tab = "restores";
        v.offset.restores = 0;
        markTab(v);
        refreshRecords(v);
      } catch (e) {
        showError(err, `The restore was not started: ${describe(e)}`);
        go.disabled = false;
      }
    });
    parts.push(h("div", { class: "confirm" },
      h("p", {}, h("strong", {}, "Every key now in "), h("strong", { class: "mono" }, target.name),
        h("strong", {}, " will be replaced by the backup's data."), " Type the instance's name to go on."),
      h("label", {}, `Instance name (${target.name})`, typed),
      err,
      h("div", { class: "dialog-actions" }, go)));
  }
  box.replaceChildren(...parts);
  const confirm = $("#restore-confirm-name");
  if (confirm) confirm.focus();
}

// ---- Backup policy ----------------------------------------------------------

const POLICY_WORDS = {
  "DCS.4072": "Keep backups for 1 to 7 days.",
  "DCS.4073": "The backup type must be automatic or manual.",
  "DCS.4074": "Only weekly plans are supported.",
  "DCS.4075": "Choose at least one day of the week.",
  "DCS.4076": "The window must be one whole hour, like 02:00–03:00.",
  "DCS.4800": "A value is not valid (the time zone is written like UTC+08:00).",
};

function policyDialog(v) {
  const inst = v.inst;
  const p = (inst.instance_backup_policy && inst.instance_backup_policy.policy) || {};
  const plan = p.periodical_backup_plan || {};
  const auto = h("input", { type: "checkbox", id: "policy-auto", checked: p.backup_type === "auto" });
  const days = fmt.WEEKDAYS.map((name, i) =>
    h("label", { class: "day" }, h("input", { type: "checkbox", name: "day", value: String(i + 1), checked: (plan.backup_at || []).includes(i + 1) }), name));
  const startHour = plan.begin_at ? Number(String(plan.begin_at).slice(0, 2)) : 2;
  const windowSel = h("select", { id: "policy-window" },
    Array.from({ length: 24 }, (_, hr) => {
      const a = String(hr).padStart(2, "0");
      const b = String((hr + 1) % 24).padStart(2, "0");
      return h("option", { value: `${a}:00-${b}:00`, selected: hr === startHour }, `${a}:00–${b}:00`);
    }));
  const keep = h("input", { id: "policy-keep", type: "number", min: "1", max: "7", value: String(p.save_days || 7) });
  const zone = h("input", { id: "policy-zone", value: plan.timezone_offset || fmt.localZone(), spellcheck: "false" });
  const err = errorLine("policy-error");
  const plannedFields = h("fieldset", { id: "policy-plan", disabled: !auto.checked },
    h("legend", {}, "Weekly plan"),
    h("div", { class: "days" }, days),
    h("div", { class: "three" },
      h("label", {}, "Window", windowSel),
      h("label", {}, "Time zone", zone),
      h("label", {}, "Keep for (days)", keep)),
    h("p", { class: "muted small" }, "One automatic backup starts in each planned window; automatic backups older than the kept days expire and their files are deleted. Manual backups never expire."));
  auto.addEventListener("change", () => (plannedFields.disabled = !auto.checked));
  const save = h("button", { type: "submit", class: "primary", id: "policy-save" }, "Save policy");
  const form = h("form", { id: "policy-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    showError(err, "");
    const policy = auto.checked
      ? {
        backup_type: "auto",
        save_days: keep.value === "" ? null : Number(keep.value),
        periodical_backup_plan: {
          period_type: "weekly",
          backup_at: days.map((d) => d.querySelector("input")).filter((i) => i.checked).map((i) => Number(i.value)),
          begin_at: windowSel.value,
          timezone_offset: zone.value.trim(),
        },
      }
      : { backup_type: "manual" };
    save.disabled = true;
    try {
      await state.client.put(`/instances/${encodeURIComponent(inst.instance_id)}`, { instance_backup_policy: policy });
      v.inst = await state.client.get(`/instances/${encodeURIComponent(inst.instance_id)}`);
      closeDialog();
      toast("Backup policy saved.");
      const summary = $("#policy-summary");
      if (summary) summary.textContent = fmt.policy(v.inst);
    } catch (e) {
      const words = e instanceof ApiError && POLICY_WORDS[e.code];
      showError(err, words ? `${words} The service said: ${e.describe()}` : `Not saved: ${describe(e)}`);
    } finally {
      save.disabled = false;
    }
  } },
  h("label", { class: "choice" }, auto, h("span", {}, h("strong", {}, "Take automatic backups"), " on a weekly plan")),
  plannedFields,
  err,
  h("div", { class: "dialog-actions" }, h("button", { type: "button", onclick: closeDialog }, "Cancel"), save));
  openDialog(`Backup policy of ${inst.name}`, form);
}

// ---- Point-in-time recovery ----------------------------------------------------

/** A time as typed: ISO-8601 with an offset or Z as given, else
 *  `YYYY-MM-DD HH:MM[:SS[.mmm]]` in the browser's time zone. Answers the
 *  ISO-8601 UTC instant (milliseconds), or null. */
function typedInstant(text) {
  const s = text.trim();
  if (/([zZ]|[+-]\d\d:?\d\d)$/.test(s)) {
    const t = Date.parse(s.replace(" ", "T"));
    return Number.isNaN(t) ? null : new Date(t).toISOString();
  }
  const m = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,3}))?)?$/.exec(s);
  if (!m) return null;
  const [y, mo, d, hh, mi, ss, ms] = m.slice(1).map((x) => Number(x || 0));
  const t = new Date(y, mo - 1, d, hh, mi, ss, Number(String(m[7] || "0").padEnd(3, "0")));
  if (t.getMonth() !== mo - 1 || t.getDate() !== d || hh > 23 || mi > 59 || ss > 59 || Number.isNaN(ms)) return null;
  return t.toISOString();
}

async function renderPitr(v) {
  const panel = $("#pitr-panel");
  if (!panel) return;
  const base = `/redis/instances/${encodeURIComponent(v.id)}/pitr`;
  let policy;
  let info;
  let periods;
  try {
    const now = new Date();
    const since = new Date(now.getTime() - 8 * 86400_000);
    const iso = (t) => `${t.toISOString().slice(0, 19)}Z`;
    [policy, info, periods] = await Promise.all([
      state.client.v3("GET", `${base}/policy`),
      state.client.v3("GET", base),
      state.client.v3("GET", `${base}/restorable-time-periods`, { query: { start_time: iso(since), end_time: iso(now), limit: 100 } }),
    ]);
  } catch (e) {
    panel.replaceChildren(h("h2", {}, "Point-in-time recovery"), h("p", { class: "error", role: "alert" }, describe(e)));
    return;
  }
  let instances = state.instances;
  try {
    instances = await loadInstances();
  } catch {
    instances = state.instances.length ? state.instances : [v.inst];
  }
  if (state.view !== v) return;
  const on = policy.enabled === true;
  const enabled = h("input", { type: "checkbox", id: "pitr-enabled", checked: on });
  const interval = h("input", { id: "pitr-interval", type: "number", min: "5", max: "120", value: String(policy.interval || 20) });
  const keep = h("input", { id: "pitr-keep", type: "number", min: "1", max: "7", value: String(policy.keep_days || 1) });
  const policyErr = errorLine("pitr-policy-error");
  const save = h("button", { type: "submit", id: "pitr-save" }, "Save");
  const policyForm = h("form", { id: "pitr-policy-form", class: "inline", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    showError(policyErr, "");
    save.disabled = true;
    try {
      const body = enabled.checked
        ? { enabled: true, interval: Number(interval.value), keep_days: Number(keep.value) }
        : { enabled: false };
      await state.client.v3("PUT", `${base}/policy`, { body });
      toast(enabled.checked ? "Point-in-time recovery on." : "Point-in-time recovery off.");
      renderPitr(v);
    } catch (e) {
      showError(policyErr, `Not saved: ${describe(e)}`);
      save.disabled = false;
    }
  } },
  h("label", { class: "choice" }, enabled, h("span", {}, "Capture every write")),
  h("label", {}, "Base every (minutes, 5–120) ", interval),
  h("label", {}, "Keep (days, 1–7) ", keep),
  save, policyErr);
  const list = (periods.restore_time || []).map((p) => {
    const [a, b] = String(p).split("/");
    return h("li", { class: "mono" }, `${fmt.time(a)} → ${fmt.time(b)}`);
  });
  // Restore to a typed instant, into this instance or another one,
  // confirmed by typing the target's name.
  const when = h("input", { id: "pitr-time", autocomplete: "off", spellcheck: "false", placeholder: "2026-12-06 10:15:30.250" });
  const targetSel = h("select", { id: "pitr-target" });
  for (const i of instances) {
    targetSel.append(h("option", { value: i.instance_id, selected: i.instance_id === v.id }, i.instance_id === v.id ? `${i.name} (this instance)` : i.name));
  }
  const nameOf = () => {
    const i = instances.find((x) => x.instance_id === targetSel.value);
    return i ? i.name : v.inst.name;
  };
  const typed = h("input", { id: "pitr-confirm-name", autocomplete: "off", spellcheck: "false" });
  const nameLabel = h("span", {}, `Type the target's name (${nameOf()}) to confirm`);
  const go = h("button", { type: "submit", class: "danger", id: "pitr-restore", disabled: true }, "Restore to this time");
  const restoreErr = errorLine("pitr-restore-error");
  const ready = () => (go.disabled = !(typedInstant(when.value) && typed.value === nameOf()));
  when.addEventListener("input", ready);
  typed.addEventListener("input", ready);
  targetSel.addEventListener("change", () => { nameLabel.textContent = `Type the target's name (${nameOf()}) to confirm`; ready(); });
  const restoreForm = h("form", { id: "pitr-restore-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    const at = typedInstant(when.value);
    if (!at || typed.value !== nameOf()) return;
    showError(restoreErr, "");
    go.disabled = true;
    const body = { restore_time: at };
    if (targetSel.value !== v.id) body.target_instance_id = targetSel.value;
    try {
      const r = await state.client.v3("PUT", base, { body });
      toast(`Restore of ${v.inst.name} to ${at} into ${nameOf()} started (${r.job_id}).`);
      typed.value = "";
      if (targetSel.value === v.id) {
        v.tab = "restores";
        v.offset.restores = 0;
        markTab(v);
        refreshRecords(v);
      }
    } catch (e) {
      showError(restoreErr, `Not started: ${describe(e)}`);
      go.disabled = false;
    }
  } },
  h("div", { class: "three" },
    h("label", {}, `Time (your zone ${fmt.localZone()}, or ISO-8601 with Z/offset)`, when),
    h("label", {}, "Into", targetSel),
    h("label", {}, nameLabel, typed)),
  restoreErr,
  h("div", { class: "dialog-actions" }, go));
  panel.replaceChildren(
    h("h2", {}, "Point-in-time recovery"),
    h("p", { id: "pitr-summary" }, on
      ? `On: a base every ${policy.interval} min, history kept ${policy.keep_days} day${policy.keep_days === 1 ? "" : "s"}; ${fmt.bytes(Number(info.storage || 0))} stored.`
      : `Off; ${fmt.bytes(Number(info.storage || 0))} stored.`),
    policyForm,
    h("h3", {}, "Restorable periods (last 8 days)"),
    list.length ? h("ul", { id: "pitr-periods" }, list) : h("p", { id: "pitr-periods", class: "muted" }, "None yet."),
    on || list.length ? restoreForm : null);
}

// ---- Start ------------------------------------------------------------------

function start() {
  if (!webCryptoAvailable()) $("#insecure").hidden = false;
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  $("#signin-json").addEventListener("input", () => {
    if (fillFromJson()) $("#signin-paste").open = false;
  });
  window.addEventListener("hashchange", route);
  try {
    const id = JSON.parse(sessionStorage.getItem("dcs-console-id") || "null");
    if (id) {
      $("#signin-project").value = id.projectId || "";
      $("#signin-ak").value = id.ak || "";
    }
  } catch {
    // Nothing remembered.
  }
  showSignin("");
  document.body.dataset.ready = "true";
}

start();
