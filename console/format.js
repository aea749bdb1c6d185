// How the console writes numbers, times, topologies and policies.

const pad = (n, w = 2) => String(n).padStart(w, "0");

export const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

export function bytes(n) {
  n = Number(n) || 0;
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export function duration(seconds) {
  if (seconds < 1) return "under 1 s";
  seconds = Math.round(seconds);
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${pad(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${pad(m % 60)} min`;
}

/** The browser's offset from UTC, written `UTC+08:00`. */
export function localZone(d = new Date()) {
  const east = -d.getTimezoneOffset();
  const sign = east < 0 ? "-" : "+";
  const a = Math.abs(east);
  return `UTC${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

/** An API time (ISO-8601, UTC) in the browser's time zone. */
export function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A `datetime-local` input's value as the API's `yyyyMMddHHmmss` (UTC). */
export function compactUtc(localValue, endOfMinute = false) {
  if (!localValue) return "";
  const d = new Date(localValue);
  if (Number.isNaN(d.getTime())) return "";
  if (endOfMinute) d.setSeconds(59);
  return (
    `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}` +
    `${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`
  );
}

export function topology(inst) {
  const replicas = Number(inst.replica_count) || 0;
  const r = replicas === 1 ? "1 replica" : `${replicas} replicas`;
  switch (inst.cache_mode) {
    case "cluster":
      return `Cluster · ${inst.sharding_count} shards · ${r}`;
    case "ha":
      return `Master/standby · ${r}`;
    default:
      return "Standalone";
  }
}

export function engine(inst) {
  return `${inst.engine} ${inst.engine_version || ""}`.trim();
}

export function policy(inst) {
  const p = inst.instance_backup_policy && inst.instance_backup_policy.policy;
  if (!p || p.backup_type !== "auto") return "Manual backups only";
  const plan = p.periodical_backup_plan || {};
  const at = plan.backup_at || [];
  const days = at.length === 7 ? "daily" : at.map((d) => WEEKDAYS[d - 1] || d).join(", ");
  const zone = plan.timezone_offset ? ` ${plan.timezone_offset}` : " UTC";
  const keep = p.save_days === 1 ? "1 day" : `${p.save_days} days`;
  return `Automatic: ${days}, ${(plan.begin_at || "").replace("-", "–")}${zone}; kept ${keep}`;
}

export const STATUS_WORDS = {
  waiting: "waiting",
  backuping: "running",
  restoring: "running",
  succeed: "succeeded",
  failed: "failed",
  expired: "expired",
  deleted: "deleted",
};

export function isActive(status) {
  return status === "waiting" || status === "backuping" || status === "restoring";
}
