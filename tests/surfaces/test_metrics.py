"""GET /metrics as Prometheus sees it: scraped before and after real jobs
(a backup and a restore through the official SDK, a backup that fails)
and parsed with prometheus_client's own parser. The counters, the
duration histogram, the bytes and the last-success and last-failure
gauges move as the jobs say; running and queued jobs show while they
wait; an instance whose redis-server stops goes to instance_up 0; no
secret is ever in the text; and with a token the endpoint wants it."""

import math
import os
import secrets
import subprocess
import time
import pytest
import requests
from huaweicloudsdkdcs.v2 import (
    BackupInstanceBody,
    CopyInstanceRequest,
    ListBackupRecordsRequest,
    ListRestoreRecordsRequest,
    RestoreInstanceBody,
    RestoreInstanceRequest,
)
from prometheus_client.parser import text_string_to_metric_families

from conftest import BIN, REDIS_CLI, start_service, wait_until

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class Scrape:
    """One parsed scrape: families by name, and sample values by name and labels."""

    def __init__(self, text):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        v = self.get(name, **labels)
        assert v is not None, f"no {name}{labels} in the scrape:\n{self.text}"
        return v

    def buckets(self, kind):
        """(le, cumulative count) of the duration histogram, in order."""
        out = []
        for (name, labels), v in self.samples.items():
            d = dict(labels)
            if name == "dcs_backup_job_duration_seconds_bucket" and d["kind"] == kind:
                out.append((float(d["le"]), v))
        return sorted(out)


def scrape(service, **headers):
    r = requests.get(service.endpoint + "/metrics", headers=headers, timeout=15)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["Content-Type"] == CONTENT_TYPE, r.headers
    return Scrape(r.text)


def start_backup(client, instance_id):
    r = client.copy_instance(
        CopyInstanceRequest(instance_id=instance_id, body=BackupInstanceBody(remark="metrics", backup_format="rdb"))
    )
    assert r.status_code == 200, r
    return r.backup_id


def backup_record(client, instance_id, backup_id):
    listing = client.list_backup_records(ListBackupRecordsRequest(instance_id=instance_id, limit=1000))
    (rec,) = [r for r in listing.backup_record_response or [] if r.backup_id == backup_id]
    return rec


def wait_backup(service, client, instance_id, backup_id, timeout=40):
    deadline = time.monotonic() + timeout
    while True:
        rec = backup_record(client, instance_id, backup_id)
        if rec.status not in ("waiting", "backuping"):
            return rec
        assert time.monotonic() < deadline, f"backup never finished: {rec}\n{service.log()}"
        time.sleep(0.1)


def wait_restore(service, client, instance_id, restore_id, timeout=40):
    deadline = time.monotonic() + timeout
    while True:
        listing = client.list_restore_records(ListRestoreRecordsRequest(instance_id=instance_id, limit=1000))
        (rec,) = [r for r in listing.restore_record_response or [] if r.restore_id == restore_id]
        if rec.status not in ("waiting", "restoring"):
            return rec
        assert time.monotonic() < deadline, f"restore never finished: {rec}\n{service.log()}"
        time.sleep(0.1)


def filled(redis_factory, n=2000, sync_delay=0):
    """A started redis-server holding `n` keys; a backup's snapshot starts
    `sync_delay` seconds after it is asked for."""
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", str(sync_delay)]))
    commands = "".join(
        f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n${len(v)}\r\n{v}\r\n"
        for k, v in ((f"key:{i}", f"value-{i}-{'x' * 40}") for i in range(n))
    )
    r = subprocess.run(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(redis.port), "--pipe"],
        input=commands.encode(),
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 0 and b"errors: 0" in r.stdout, r.stdout + r.stderr
    return redis


def delta(after, before, name, **labels):
    return after.value(name, **labels) - before.value(name, **labels)


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_every_family_is_documented_and_named_as_prometheus_wants(service):
    s = scrape(service)
    want = {
        "dcs_backup_jobs": "counter",
        "dcs_backup_job_duration_seconds": "histogram",
        "dcs_backup_bytes": "counter",
        "dcs_backup_jobs_running": "gauge",
        "dcs_backup_jobs_queued": "gauge",
        "dcs_backup_schedule_windows": "counter",
        "dcs_backup_verifications": "counter",
        "dcs_backup_verification_last_success_timestamp_seconds": "gauge",
        "dcs_backup_last_success_timestamp_seconds": "gauge",
        "dcs_backup_last_failure_timestamp_seconds": "gauge",
        "dcs_backup_policy_period_seconds": "gauge",
        "dcs_backup_instance_up": "gauge",
        "dcs_backup_catalog_up": "gauge",
        "dcs_backup_build_info": "gauge",
    }
    for name, kind in want.items():
        assert name in s.families, f"{name} missing:\n{s.text}"
        assert s.families[name].type == kind, (name, s.families[name].type)
        assert len(s.families[name].documentation) > 20, name
    for name in s.families:
        assert name.startswith("dcs_backup_"), name
    # Counters end in _total in the text (the parser strips it from the family name).
    assert "dcs_backup_jobs_total{" in s.text and "dcs_backup_bytes_total{" in s.text
    assert s.value("dcs_backup_catalog_up") == 1
    for outcome in ("started", "missed", "skipped"):
        assert s.value("dcs_backup_schedule_windows_total", outcome=outcome) >= 0
    version = subprocess.run([BIN, "--version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    assert s.value("dcs_backup_build_info", version=version) == 1


def test_a_backup_and_a_restore_move_the_counters_the_histogram_and_last_success(service, client, redis_factory):
    redis = filled(redis_factory)
    iid = service.adopt(redis)
    before = scrape(service)
    assert before.get("dcs_backup_last_success_timestamp_seconds", instance_id=iid, kind="backup") is None

    t0 = time.time()
    backup_id = start_backup(client, iid)
    rec = wait_backup(service, client, iid, backup_id)
    t1 = time.time()
    assert rec.status == "succeed", rec
    after = scrape(service)

    assert delta(after, before, "dcs_backup_jobs_total", kind="backup", status="succeed") == 1
    assert delta(after, before, "dcs_backup_jobs_total", kind="backup", status="failed") == 0
    assert delta(after, before, "dcs_backup_jobs_total", kind="restore", status="succeed") == 0
    # The histogram: one more observation, no longer than the whole wait.
    assert delta(after, before, "dcs_backup_job_duration_seconds_count", kind="backup") == 1
    took = delta(after, before, "dcs_backup_job_duration_seconds_sum", kind="backup")
    assert 0 < took <= t1 - t0 + 0.5, took
    buckets = after.buckets("backup")
    assert buckets[-1] == (math.inf, after.value("dcs_backup_job_duration_seconds_count", kind="backup"))
    assert [c for _, c in buckets] == sorted(c for _, c in buckets), "buckets must be cumulative"
    old = dict(before.buckets("backup"))
    grew = [le for le, c in buckets if c - old[le] == 1]
    assert grew and grew[0] >= took and all(le >= grew[0] for le, c in buckets if c - old[le] == 1)
    assert grew == [le for le, _ in buckets if le >= grew[0]], "the observation lands in every bucket from its own up"
    # The bytes stored are the backup's size.
    assert rec.size > 50_000, rec
    assert delta(after, before, "dcs_backup_bytes_total", direction="stored") == rec.size
    # The last success comes from the catalog: the backup's end.
    last = after.value("dcs_backup_last_success_timestamp_seconds", instance_id=iid, kind="backup")
    assert t0 - 1 <= last <= t1 + 1, (t0, last, t1)
    assert after.get("dcs_backup_last_failure_timestamp_seconds", instance_id=iid, kind="backup") is None

    # A restore of that backup into the same instance.
    redis.cli("FLUSHALL")
    t2 = time.time()
    r = client.restore_instance(
        RestoreInstanceRequest(instance_id=iid, body=RestoreInstanceBody(backup_id=backup_id, remark="metrics"))
    )
    rrec = wait_restore(service, client, iid, r.restore_id)
    t3 = time.time()
    assert rrec.status == "succeed", rrec
    assert redis.cli("DBSIZE") == "2000"
    final = scrape(service)
    assert delta(final, after, "dcs_backup_jobs_total", kind="restore", status="succeed") == 1
    assert delta(final, after, "dcs_backup_job_duration_seconds_count", kind="restore") == 1
    assert delta(final, after, "dcs_backup_job_duration_seconds_count", kind="backup") == 0
    assert delta(final, after, "dcs_backup_bytes_total", direction="restored") == rec.size
    assert delta(final, after, "dcs_backup_bytes_total", direction="stored") == 0
    restored_at = final.value("dcs_backup_last_success_timestamp_seconds", instance_id=iid, kind="restore")
    assert t2 - 1 <= restored_at <= t3 + 1
    # The backup's own gauge did not move.
    assert final.value("dcs_backup_last_success_timestamp_seconds", instance_id=iid, kind="backup") == last
    assert final.value("dcs_backup_jobs_running", kind="backup") == 0
    assert final.value("dcs_backup_jobs_running", kind="restore") == 0
    assert final.value("dcs_backup_jobs_queued") == 0
    service.assert_alive()


def test_a_failed_backup_counts_as_failed_and_the_stopped_server_goes_down(service, client, redis_factory):
    redis = filled(redis_factory, n=10)
    iid = service.adopt(redis)
    wait_until(
        "instance_up 1",
        lambda: scrape(service).get("dcs_backup_instance_up", instance_id=iid) == 1,
        timeout=20,
        interval=0.5,
    )
    before = scrape(service)
    redis.stop()
    t0 = time.time()
    backup_id = start_backup(client, iid)
    rec = wait_backup(service, client, iid, backup_id)
    assert rec.status == "failed", rec
    after = scrape(service)
    assert delta(after, before, "dcs_backup_jobs_total", kind="backup", status="failed") == 1
    assert delta(after, before, "dcs_backup_jobs_total", kind="backup", status="succeed") == 0
    assert delta(after, before, "dcs_backup_job_duration_seconds_count", kind="backup") == 1
    assert delta(after, before, "dcs_backup_bytes_total", direction="stored") == 0
    failed_at = after.value("dcs_backup_last_failure_timestamp_seconds", instance_id=iid, kind="backup")
    assert t0 - 1 <= failed_at <= time.time() + 1
    assert after.get("dcs_backup_last_success_timestamp_seconds", instance_id=iid, kind="backup") is None
    # A scrape reuses an answer for 10 s, then probes again.
    wait_until(
        "instance_up 0 after the server stopped",
        lambda: scrape(service).get("dcs_backup_instance_up", instance_id=iid) == 0,
        timeout=25,
        interval=0.5,
        on_fail=service.log,
    )


def test_running_and_queued_jobs_show_while_they_wait(service, client, redis_factory):
    # Each master waits 4 s before its snapshot; a project runs 2 jobs at
    # once (--max-jobs-per-project), so the third waits in the queue.
    servers = [filled(redis_factory, n=10, sync_delay=4) for _ in range(3)]
    ids = [service.adopt(s) for s in servers]
    backups = [start_backup(client, iid) for iid in ids]
    seen = {}

    def busy():
        s = scrape(service)
        seen["running"] = s.value("dcs_backup_jobs_running", kind="backup")
        seen["queued"] = s.value("dcs_backup_jobs_queued")
        return seen["running"] == 2 and seen["queued"] == 1

    wait_until("2 running and 1 queued", busy, timeout=10, interval=0.2, on_fail=lambda: str(seen))
    for iid, b in zip(ids, backups):
        assert wait_backup(service, client, iid, b, timeout=60).status == "succeed"
    s = scrape(service)
    assert s.value("dcs_backup_jobs_running", kind="backup") == 0
    assert s.value("dcs_backup_jobs_queued") == 0


def test_a_policy_exports_its_period(service, client, redis_factory):
    from huaweicloudsdkdcs.v2 import (
        BackupPlan,
        BackupPolicy,
        ModifyInstanceBody,
        UpdateInstanceRequest,
    )

    redis = filled(redis_factory, n=10)
    iid = service.adopt(redis)
    assert scrape(service).get("dcs_backup_policy_period_seconds", instance_id=iid) is None
    policy = BackupPolicy(
        backup_type="auto",
        save_days=3,
        periodical_backup_plan=BackupPlan(period_type="weekly", backup_at=[1, 3, 5], begin_at="02:00-03:00"),
    )
    r = client.update_instance(UpdateInstanceRequest(instance_id=iid, body=ModifyInstanceBody(instance_backup_policy=policy)))
    assert r.status_code in (200, 204), r
    # Friday to Monday: three days.
    assert scrape(service).value("dcs_backup_policy_period_seconds", instance_id=iid) == 3 * 86400


def test_no_secret_is_ever_in_the_text(service, client, redis_factory):
    pw = "pw-" + secrets.token_hex(12)
    redis = redis_factory.start(redis_factory.with_password(pw))
    iid = service.adopt(redis, password=pw)
    b = start_backup(client, iid)
    assert wait_backup(service, client, iid, b).status == "succeed"
    text = scrape(service).text
    assert iid in text
    for secret in (pw, service.creds["sk"], service.creds["ak"]):
        assert secret not in text
    assert "password" not in text.lower()
    assert "://" not in text, "no URL (database, storage) in the metrics"
    with open(os.path.join(service.data_dir, "secret.key")) as f:
        for word in f.read().split():
            assert len(word) < 32 or word not in text


def test_odd_requests_never_get_a_server_error(service):
    url = service.endpoint + "/metrics"
    for r in (
        requests.get(url + "?x=%ff&x=1&name[]=<script>", timeout=15),
        requests.get(url, headers={"Authorization": "Bearer " + "a" * 4000}, timeout=15),
        requests.get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=15),
        requests.head(url, timeout=15),
    ):
        assert r.status_code == 200, (r.request.url, r.status_code)
    r = requests.post(url, data=b"x" * 10_000, timeout=15)
    assert r.status_code == 405
    # /metrics is not part of the DCS API document.
    doc = requests.get(service.endpoint + "/openapi.json", timeout=15).json()
    assert "/metrics" not in doc["paths"]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A second service whose /metrics wants a bearer token (from its variable)."""
    token = "tok-" + secrets.token_urlsafe(24)
    old = os.environ.get("DCS_BACKUP_METRICS_TOKEN")
    os.environ["DCS_BACKUP_METRICS_TOKEN"] = token
    try:
        svc = start_service(str(tmp_path_factory.mktemp("guarded")))
    finally:
        if old is None:
            del os.environ["DCS_BACKUP_METRICS_TOKEN"]
        else:
            os.environ["DCS_BACKUP_METRICS_TOKEN"] = old
    yield svc, token
    svc.stop()


def test_with_a_token_only_the_bearer_of_it_may_scrape(guarded):
    svc, token = guarded
    url = svc.endpoint + "/metrics"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer " + token[:-1]},
        {"Authorization": "Bearer " + token + "x"},
        {"Authorization": "Basic " + token},
        {"Authorization": token},
    ):
        r = requests.get(url, headers=headers, timeout=15)
        assert r.status_code == 401, (headers, r.status_code)
        assert r.content == b"", "a refusal says nothing more"
        assert r.headers.get("WWW-Authenticate") == "Bearer"
    s = scrape(svc, Authorization="Bearer " + token)
    assert s.value("dcs_backup_catalog_up") == 1
    assert token not in s.text
    # The rest of the service is as open as ever.
    assert requests.get(svc.endpoint + "/health", timeout=15).status_code == 200
    with open(svc.log_path, "rb") as f:
        assert token.encode() not in f.read(), "the token never reaches the log"
