"""Point-in-time recovery through the official GaussDB NoSQL SDK
(`huaweicloudsdkgaussdbfornosql` v3) against real servers: the policy and
its validation, capture of a live master, restorable periods, restores to
instants inside quiet gaps between write batches (backwards in time and
forwards again) compared with DEBUG DIGEST of the master at that instant
(every key, value, type and absolute expiry), a SIGKILL of the service
mid-capture resumed with no gap in the history, a backlog too small
leaving a visible gap, and a corrupted segment refused before
the target is touched."""

import datetime
import os
import signal
import time

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkgaussdbfornosql.v3 import (
    GaussDBforNoSQLClient,
    ListJobsRequest,
    ListRedisPitrRestoreTimeRequest,
    RestoreRedisPitrRequest,
    RestoreRedisPitrRequestBody,
    SetRedisPitrPolicyRequest,
    SetRedisPitrPolicyRequestBody,
    ShowRedisPitrInfoRequest,
    ShowRedisPitrPolicyRequest,
)

from conftest import Service, sdk_error, wait_until
from test_backups import digest, pipe, resp


def gauss(service):
    cred = BasicCredentials(service.creds["ak"], service.creds["sk"], service.project_id)
    return GaussDBforNoSQLClient.new_builder().with_credentials(cred).with_endpoints([service.endpoint]).build()


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def second(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_period(p):
    a, b = p.split("/")
    f = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    return f(a), f(b)


def periods(g, instance_id, start=None, end=None):
    now = time.time()
    r = g.list_redis_pitr_restore_time(
        ListRedisPitrRestoreTimeRequest(
            instance_id=instance_id,
            start_time=second(start if start is not None else now - 3600),
            end_time=second(end if end is not None else now + 3600),
        )
    )
    assert r.total_count == len(r.restore_time or []), r
    return [parse_period(p) for p in (r.restore_time or [])]


def covered(g, instance_id, t):
    return any(a <= t <= b for a, b in periods(g, instance_id))


def enable(g, instance_id, interval=5, keep_days=1):
    g.set_redis_pitr_policy(
        SetRedisPitrPolicyRequest(
            instance_id=instance_id,
            body=SetRedisPitrPolicyRequestBody(enabled=True, interval=interval, keep_days=keep_days),
        )
    )


def restore_to(g, instance_id, t):
    r = g.restore_redis_pitr(
        RestoreRedisPitrRequest(instance_id=instance_id, body=RestoreRedisPitrRequestBody(restore_time=iso(t)))
    )
    assert r.status_code == 202, r
    return r.job_id


def wait_job(g, job_id, timeout=60):
    seen = {}

    def done():
        r = g.list_jobs(ListJobsRequest(id=job_id))
        assert r.total_count == 1, r
        seen["job"] = r.jobs[0]
        return r.jobs[0].status in ("Completed", "Failed")

    wait_until(f"job {job_id}", done, timeout=timeout, interval=0.2, on_fail=lambda: str(seen))
    return seen["job"]


def batch(redis, tag, n=300):
    cmds = [resp("SELECT", 0)]
    for i in range(n):
        cmds.append(resp("SET", f"k:{i}", f"{tag}-{i}"))
    cmds.append(resp("SET", f"only:{tag}", tag, "PX", 3_600_000))
    cmds.append(resp("DEL", f"k:{n - 1}"))
    cmds.append(resp("INCRBY", "counter", 7))
    cmds.append(resp("HSET", "h", tag, "1"))
    cmds.append(resp("MULTI"))
    cmds.append(resp("RPUSH", "list", tag))
    cmds.append(resp("SET", f"tx:{tag}", "in-transaction"))
    cmds.append(resp("EXEC"))
    cmds.append(resp("SELECT", 3))
    cmds.append(resp("SET", f"db3:{tag}", tag, "EX", 7200))
    pipe(redis, b"".join(cmds))


@pytest.fixture
def source(service, redis_factory):
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    instance_id = service.adopt(redis)
    return redis, instance_id


def test_policy_round_trips_and_bad_values_are_400(service, source):
    g = gauss(service)
    _, instance_id = source
    r = g.show_redis_pitr_policy(ShowRedisPitrPolicyRequest(instance_id=instance_id))
    assert r.enabled is False
    for interval, keep in ((4, 1), (121, 1), (20, 0), (20, 8)):
        with pytest.raises(ClientRequestException) as e:
            g.set_redis_pitr_policy(
                SetRedisPitrPolicyRequest(
                    instance_id=instance_id,
                    body=SetRedisPitrPolicyRequestBody(enabled=True, interval=interval, keep_days=keep),
                )
            )
        assert sdk_error(e).status_code == 400 and sdk_error(e).error_code == "DCS.4800", e.value
    r = g.show_redis_pitr_policy(ShowRedisPitrPolicyRequest(instance_id=instance_id))
    assert r.enabled is False, "a refused policy changed nothing"
    g.set_redis_pitr_policy(
        SetRedisPitrPolicyRequest(
            instance_id=instance_id, body=SetRedisPitrPolicyRequestBody(enabled=False, interval=30, keep_days=2)
        )
    )
    assert g.show_redis_pitr_policy(ShowRedisPitrPolicyRequest(instance_id=instance_id)).enabled is False
    enable(g, instance_id, interval=30, keep_days=2)
    r = g.show_redis_pitr_policy(ShowRedisPitrPolicyRequest(instance_id=instance_id))
    assert (r.enabled, r.interval, r.keep_days) == (True, 30, 2)
    # A restore to a time with no history: 400, nothing queued.
    with pytest.raises(ClientRequestException) as e:
        restore_to(g, instance_id, time.time() - 86400)
    assert sdk_error(e).status_code == 400, e.value
    bad = service.signed(
        "GET", f"/v3/{service.project_id}/redis/instances/{instance_id}/pitr/restorable-time-periods",
        query={"start_time": "yesterday", "end_time": second(time.time())},
    )
    assert bad.status_code == 400 and bad.json()["error_code"] == "DCS.4800", bad.text


def test_restores_to_instants_in_quiet_gaps_backwards_and_forwards(service, source):
    g = gauss(service)
    redis, instance_id = source
    batch(redis, "zero")
    enable(g, instance_id)
    wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5, on_fail=service.log)
    marks = []
    for tag in ("one", "two", "three"):
        batch(redis, tag)
        time.sleep(1.0)
        marks.append((time.time(), digest(redis)))
        time.sleep(1.0)
    wait_until("the last mark covered", lambda: covered(g, instance_id, marks[-1][0]), timeout=20, interval=0.5,
               on_fail=service.log)
    info = g.show_redis_pitr_info(ShowRedisPitrInfoRequest(instance_id=instance_id))
    assert int(info.storage) > 0, info
    # Backwards to the first gap, forwards to the last, back to the middle.
    for t, want in (marks[0], marks[2], marks[1]):
        job = wait_job(g, restore_to(g, instance_id, t))
        assert job.status == "Completed", (job, service.log())
        assert digest(redis) == want, f"restore to {iso(t)} differs\n{service.log()}"
        assert redis.info("replication")["role"] == "master"
    # The job is a DCS restore record of the instance, named after the time.
    rows = service.sql(f"SELECT backup_name, status FROM restores WHERE instance_id = '{instance_id}'")
    assert len(rows) == 3 and all(r[0].startswith("pitr_") and r[1] == "succeed" for r in rows), rows


def test_sigkill_mid_capture_resumes_without_a_gap(tmp_path, redis_factory):
    svc = Service(str(tmp_path))
    svc.start()
    try:
        redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
        instance_id = svc.adopt(redis)
        g = gauss(svc)
        enable(g, instance_id)
        wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5, on_fail=svc.log)
        batch(redis, "before")
        time.sleep(0.5)
        before = (time.time(), digest(redis))
        time.sleep(1.5)
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait()
        batch(redis, "while-down")
        time.sleep(1.0)
        down = (time.time(), digest(redis))
        time.sleep(0.5)
        svc.start()
        resumed = time.time() + 2
        wait_until("capture resumed", lambda: covered(g, instance_id, resumed), timeout=30, interval=0.5,
                   on_fail=svc.log)
        batch(redis, "after")
        time.sleep(1.0)
        after = (time.time(), digest(redis))
        wait_until("the last write covered", lambda: covered(g, instance_id, after[0]), timeout=30, interval=0.5,
                   on_fail=svc.log)
        # The backlog held the writes: the link resumed (+CONTINUE), no new
        # base was needed. The time no link was up is not restorable: the
        # writes made then carry the time they arrived, not when they were
        # made, so the periods leave it out rather than claim it.
        assert "link resumed with no gap" in svc.log()
        assert svc.sql(f"SELECT COUNT(*) FROM pitr_bases WHERE instance_id = '{instance_id}'") == [["1"]]
        ps = periods(g, instance_id)
        assert len(ps) == 2 and ps[0][1] < down[0] < ps[1][0], (ps, down)
        with pytest.raises(ClientRequestException) as e:
            restore_to(g, instance_id, down[0])
        assert sdk_error(e).status_code == 400, e.value
        # Restores on both sides of the restart point are exact; the one
        # after it replays the writes made while the service was down.
        for t, want in (before, after):
            job = wait_job(g, restore_to(g, instance_id, t))
            assert job.status == "Completed", (job, svc.log())
            assert digest(redis) == want, f"restore to {iso(t)} differs\n{svc.log()}"
    finally:
        svc.stop()


def test_a_tiny_backlog_leaves_a_visible_gap_and_a_corrupt_segment_is_refused(service, redis_factory):
    g = gauss(service)
    redis = redis_factory.start(
        redis_factory.new(["--repl-diskless-sync-delay", "0", "--repl-backlog-size", "16384"])
    )
    instance_id = service.adopt(redis)
    enable(g, instance_id)
    wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5, on_fail=service.log)
    batch(redis, "a")
    time.sleep(1.0)
    t_a = time.time()
    time.sleep(1.0)
    # Disable capture, write more than the backlog holds, enable again.
    g.set_redis_pitr_policy(
        SetRedisPitrPolicyRequest(instance_id=instance_id, body=SetRedisPitrPolicyRequestBody(enabled=False))
    )
    time.sleep(4)
    gap = time.time()
    batch(redis, "lost", n=2000)
    time.sleep(1)
    enable(g, instance_id)
    wait_until("two periods", lambda: len(periods(g, instance_id)) == 2, timeout=40, interval=0.5,
               on_fail=lambda: f"{periods(g, instance_id)}\n{service.log()}")
    ps = periods(g, instance_id)
    assert not any(a <= gap <= b for a, b in ps), ps
    # Corrupt the segment a restore to t_a needs: refused, target untouched.
    rows = service.sql(
        f"SELECT object_key FROM pitr_segments WHERE instance_id = '{instance_id}' ORDER BY first_at LIMIT 1"
    )
    path = os.path.join(service.data_dir, "backups", rows[0][0])
    with open(path, "r+b") as f:
        f.seek(0)
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    now = digest(redis)
    job = wait_job(g, restore_to(g, instance_id, t_a))
    assert job.status == "Failed", job
    assert "BLAKE3" in job.fail_reason, job
    assert digest(redis) == now, "the target was touched"
