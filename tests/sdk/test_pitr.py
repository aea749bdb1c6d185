"""Point-in-time recovery through the official GaussDB NoSQL SDK
(`huaweicloudsdkgaussdbfornosql` v3) against real servers: the policy and
its validation, capture of a live master, restorable periods, restores to
instants inside quiet gaps between write batches (backwards in time and
forwards again) compared with DEBUG DIGEST of the master at that instant
(every key, value, type and absolute expiry), a SIGKILL of the service
mid-capture resumed with no gap in the history, a backlog too small
leaving a visible gap, a corrupted segment refused before
the target is touched, and manual backups serving as bases (the newest
one before T is where a restore starts; a deleted one is no base; a
recent one spares the source a periodic base).

Run once (on SQLite only: they exercise sources, not the catalog): the
same quiet-gap story on Redis 6.2, 8.2 and Valkey 9.1 sources (compared
key by key: value and absolute expiry; 6.2 propagates relative
expiries, which the replay makes absolute from their receipt time), a
3-shard cluster restored to T, also while a slot migrates (the replay's
ASK/MOVED replies are sent again, not errors), a capture link that
stays up through a silence three times the master's `repl-timeout`, a
switchover continued through the promoted master's `+CONTINUE`, and the
whole story on an S3 store."""

import datetime
import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest
import redis as redispy
from redis.crc import key_slot
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

from conftest import DATABASE, REDIS_CLI, REDIS_SERVER, Service, free_port, sdk_error, server_version, wait_until
from test_backups import digest, pipe, resp, s3_service  # noqa: F401 (a fixture)


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
    cmds.append(resp("SETEX", f"sx:{tag}", 5000, tag))
    cmds.append(resp("EXPIRE", "h", 86400))
    # A message in the stream: delivered then, never again by a restore.
    cmds.append(resp("PUBLISH", "pitr-news", tag))
    cmds.append(resp("SELECT", 0))
    pipe(redis, b"".join(cmds))


def client_of(redis, db=0):
    return redispy.Redis(host="127.0.0.1", port=redis.port, db=db, socket_timeout=10)


def call(c, *args):
    """One command; on a node importing the key's slot, preceded by ASKING
    (else it answers MOVED for keys it already holds)."""
    try:
        return c.execute_command(*args)
    except redispy.exceptions.MovedError:
        p = c.pipeline(transaction=False)
        p.execute_command("ASKING")
        p.execute_command(*args)
        return p.execute()[1]


def value(c, key):
    t = call(c, "TYPE", key).decode()
    if t == "string":
        v = call(c, "GET", key)
    elif t == "hash":
        h = call(c, "HGETALL", key)
        v = sorted(h.items()) if isinstance(h, dict) else sorted(zip(h[::2], h[1::2]))
    elif t == "list":
        v = call(c, "LRANGE", key, 0, -1)
    elif t == "set":
        v = sorted(call(c, "SMEMBERS", key))
    elif t == "zset":
        v = call(c, "ZRANGE", key, 0, -1, "WITHSCORES")
    else:
        v = None
    return t, v


def expiry(c, key, exact):
    """The key's absolute expiry in ms (-1 none): PEXPIRETIME where the
    server has it (7.0+), else now + PTTL (6.2), to within a few ms."""
    if exact:
        return call(c, "PEXPIRETIME", key)
    ttl = call(c, "PTTL", key)
    return -1 if ttl < 0 else int(time.time() * 1000) + ttl


def state(redis):
    """Every key of every database: (type, value, absolute expiry)."""
    exact = server_version(redis.binary) >= (7, 0)
    out = {}
    dbs = [int(k[2:]) for k in redis.info("keyspace") if k.startswith("db")]
    for db in dbs:
        c = client_of(redis, db)
        for key in c.scan_iter(count=1000):
            out[(db, key)] = (*value(c, key), expiry(c, key, exact))
    return out


def same_state(got, want, slack_ms=0):
    """Equal keys and values; expiries equal (within `slack_ms`)."""
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))[:10]
    for k, (t, v, e) in want.items():
        gt, gv, ge = got[k]
        assert (gt, gv) == (t, v), (k, got[k], want[k])
        assert (e == -1) == (ge == -1) and abs(ge - e) <= slack_ms, (k, ge, e)


@pytest.fixture
def source(service, redis_factory):
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    instance_id = service.adopt(redis)
    return redis, instance_id


def versioned(env):
    """A source server from $env, tested once: on SQLite only."""
    marks = [
        pytest.mark.skipif(DATABASE != "sqlite", reason="server versions run once, on SQLite: they do not exercise the catalog"),
        pytest.mark.skipif(not os.environ.get(env), reason=f"${env} not set (source /work/notes/env.sh)"),
    ]
    return pytest.param(os.environ.get(env), id=env, marks=marks)


ONCE = pytest.mark.skipif(DATABASE != "sqlite", reason="runs once, on SQLite: it does not exercise the catalog")


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


@pytest.mark.parametrize(
    "binary",
    [
        pytest.param(None, id="default"),
        versioned("DCS_TEST_REDIS62"),
        versioned("DCS_TEST_REDIS82"),
        versioned("DCS_TEST_VALKEY"),
    ],
)
def test_restores_to_instants_in_quiet_gaps_backwards_and_forwards(service, redis_factory, binary):
    g = gauss(service)
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"], binary=binary))
    instance_id = service.adopt(redis)
    exact = server_version(redis.binary) >= (7, 0)
    batch(redis, "zero")
    enable(g, instance_id)
    wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5, on_fail=service.log)
    marks = []
    for tag in ("one", "two", "three"):
        batch(redis, tag)
        time.sleep(1.0)
        marks.append((time.time(), state(redis), digest(redis) if exact else None))
        time.sleep(1.0)
    wait_until("the last mark covered", lambda: covered(g, instance_id, marks[-1][0]), timeout=20, interval=0.5,
               on_fail=service.log)
    info = g.show_redis_pitr_info(ShowRedisPitrInfoRequest(instance_id=instance_id))
    assert int(info.storage) > 0, info
    # A subscriber of the target: the stream's PUBLISHes are not replayed.
    sub = client_of(redis).pubsub()
    sub.subscribe("pitr-news")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    # Backwards to the first gap, forwards to the last, back to the middle.
    for t, want, want_digest in (marks[0], marks[2], marks[1]):
        job = wait_job(g, restore_to(g, instance_id, t))
        assert job.status == "Completed", (job, service.log())
        # 6.2's relative expiries are made absolute from their receipt:
        # the master's instant to within the link's latency.
        same_state(state(redis), want, slack_ms=0 if exact else 50)
        if exact:
            assert digest(redis) == want_digest, f"restore to {iso(t)} differs\n{service.log()}"
        assert redis.info("replication")["role"] == "master"
    assert sub.get_message(timeout=1) is None, "a restore published a message of the log"
    sub.close()
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


def restore_into(service, instance_id, t, target_id):
    """`target_instance_id` through a raw signed request (the SDK's body
    model lacks the field)."""
    body = {"restore_time": iso(t), "target_instance_id": target_id}
    return service.signed(
        "PUT", f"/v3/{service.project_id}/redis/instances/{instance_id}/pitr", body=json.dumps(body).encode()
    )


def test_a_history_restores_into_another_instance_whose_own_capture_stays_true(service, source, redis_factory):
    g = gauss(service)
    redis, instance_id = source
    enable(g, instance_id)
    # The other instance is captured too: its history must record the
    # restore as what happened to it, and still restore to before it.
    other = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    other_id = service.adopt(other)
    pipe(other, resp("SET", "mine", "other's own", "PX", 3_600_000) + resp("RPUSH", "l", "x"))
    enable(g, other_id)
    # A target without HSET (renamed away) cannot take a log that holds it.
    crippled = redis_factory.start(
        redis_factory.new(["--repl-diskless-sync-delay", "0", "--rename-command", "HSET", "hset-is-gone"])
    )
    crippled_id = service.adopt(crippled)
    pipe(crippled, resp("SET", "keep", "me"))
    for i in (instance_id, other_id):
        wait_until("a restorable period", lambda: periods(g, i), timeout=30, interval=0.5, on_fail=service.log)
    batch(redis, "a")
    time.sleep(1.0)
    t, want = time.time(), digest(redis)
    time.sleep(1.0)
    batch(redis, "b")
    t_other, other_before = time.time(), digest(other)
    wait_until("covered", lambda: covered(g, instance_id, t) and covered(g, other_id, t_other), timeout=20,
               interval=0.5, on_fail=service.log)
    crippled_before = digest(crippled)
    r = restore_into(service, instance_id, t, crippled_id)
    assert r.status_code == 202, r.text
    job = wait_job(g, r.json()["job_id"])
    assert job.status == "Failed" and "HSET" in job.fail_reason, job
    assert digest(crippled) == crippled_before, "the refused target was touched"
    # An unknown target: 400, nothing queued.
    r = restore_into(service, instance_id, t, "00000000-0000-4000-8000-000000000000")
    assert r.status_code == 400 and r.json()["error_code"] == "DCS.4800", r.text
    now = digest(redis)
    r = restore_into(service, instance_id, t, other_id)
    assert r.status_code == 202, r.text
    job = wait_job(g, r.json()["job_id"])
    assert job.status == "Completed", (job, service.log())
    assert digest(other) == want, "the target is not the source at T"
    assert digest(redis) == now, "the source was touched"
    rows = service.sql(f"SELECT backup_name, source_instance_id FROM restores WHERE instance_id = '{other_id}'")
    assert rows == [[f"pitr_{datetime.datetime.fromtimestamp(t, datetime.timezone.utc):%Y%m%d%H%M%S}", instance_id]], rows
    # The target's own history: back to before the restore, its own data.
    job = wait_job(g, restore_to(g, other_id, t_other))
    assert job.status == "Completed", (job, service.log())
    assert digest(other) == other_before


def test_backups_serve_as_bases_and_a_deleted_one_stops(service, client, source):
    """A manual backup taken while capture runs is a base: a restore to a
    later instant starts from the newest one (the restore record names
    it, and the replay is the log after it), RDB or AOF alike; one that is
    deleted is a base no more, and the restore falls back to an older one,
    still exact."""
    from test_backups import start_backup, wait_backup
    from test_restores import restore_record
    from huaweicloudsdkdcs.v2 import DeleteBackupFileRequest

    g = gauss(service)
    redis, instance_id = source
    batch(redis, "zero")
    enable(g, instance_id)
    wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5, on_fail=service.log)

    def mark(tag):
        batch(redis, tag)
        time.sleep(1.0)
        m = (time.time(), digest(redis))
        time.sleep(0.5)
        return m

    def backup(fmt):
        backup_id = start_backup(client, instance_id, fmt)
        assert wait_backup(client, instance_id, backup_id).status == "succeed"
        return backup_id

    before = mark("a")
    rdb_id = backup("rdb")
    middle = mark("b")
    aof_id = backup("aof")
    last = mark("c")
    wait_until("the last mark covered", lambda: covered(g, instance_id, last[0]), timeout=20, interval=0.5,
               on_fail=service.log)

    def restored_from(t, want):
        job_id = restore_to(g, instance_id, t)
        job = wait_job(g, job_id)
        assert job.status == "Completed", (job, service.log())
        assert digest(redis) == want, f"restore to {iso(t)} differs\n{service.log()}"
        rec = restore_record(client, instance_id, job_id)
        assert rec.backup_name.startswith("pitr_"), rec
        return rec.backup_id

    assert restored_from(last[0], last[1]) == aof_id, "the newest base is the AOF backup"
    assert restored_from(middle[0], middle[1]) == rdb_id
    assert restored_from(before[0], before[1]) not in (rdb_id, aof_id), "a backup is no base before it was taken"
    client.delete_backup_file(DeleteBackupFileRequest(instance_id=instance_id, backup_id=aof_id))
    # A millisecond later: the same signed request twice in one second
    # would be a replay, refused.
    assert restored_from(last[0] + 0.001, last[1]) == rdb_id, "a deleted backup is a base no more"


@ONCE
def test_a_switchover_continues_the_same_history(service, redis_factory):
    """The replica is promoted and the old master follows it: capture
    reconnects to the new master with `PSYNC` and gets `+CONTINUE <newid>`
    (no full sync, no new base), the segments after it carry the new
    replication id, and restores on both sides of the switchover are
    exact."""
    g = gauss(service)
    old = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    new = redis_factory.new(["--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", str(old.port)])
    redis_factory.start(new)

    def synced(master, replica):
        m, r = master.info("replication"), replica.info("replication")
        return r.get("master_link_status") == "up" and m.get("master_repl_offset") == r.get("master_repl_offset")

    wait_until("replica in sync", lambda: synced(old, new), timeout=20, on_fail=lambda: old.log() + new.log())
    instance_id = service.adopt(old)
    enable(g, instance_id)
    wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5, on_fail=service.log)
    bases = lambda: int(service.sql(f"SELECT count(*) FROM pitr_bases WHERE instance_id = '{instance_id}'")[0][0])
    bases_before = bases()

    batch(old, "before")
    time.sleep(1.0)
    before = (time.time(), digest(old))
    wait_until("the near side covered", lambda: covered(g, instance_id, before[0]), timeout=20, interval=0.5,
               on_fail=service.log)
    wait_until("replica in sync", lambda: synced(old, new), timeout=20)
    new.cli("REPLICAOF", "NO", "ONE")
    old.cli("REPLICAOF", "127.0.0.1", str(new.port))
    wait_until("the old master follows", lambda: synced(new, old), timeout=20, on_fail=lambda: old.log() + new.log())
    switched = time.time()
    new_id = new.info("replication")["master_replid"]
    # A first write through the new master: its arrival resumes coverage.
    new.cli("SET", "switched", "1")
    wait_until("capture follows the new master", lambda: any(a > switched for a, _ in periods(g, instance_id)),
               timeout=30, interval=0.5, on_fail=service.log)
    # While the link moved, writes carried their arrival time only: that
    # stretch is not claimed.
    assert not covered(g, instance_id, switched), periods(g, instance_id)
    batch(new, "after")
    time.sleep(1.0)
    after = (time.time(), digest(new))
    time.sleep(0.5)
    wait_until("the switchover's far side covered", lambda: covered(g, instance_id, after[0]), timeout=30,
               interval=0.5, on_fail=service.log)
    assert covered(g, instance_id, before[0]), periods(g, instance_id)
    ids = service.sql(f"SELECT DISTINCT repl_id FROM pitr_segments WHERE instance_id = '{instance_id}'")
    assert [new_id] in ids, (ids, new_id, service.log())
    assert bases() == bases_before, "the promoted master continued the history: no full sync, no new base"

    for t, want in (before, after):
        job = wait_job(g, restore_to(g, instance_id, t))
        assert job.status == "Completed", (job, service.log())
        assert digest(new) == want, f"restore to {iso(t)} differs\n{service.log()}"


@ONCE
def test_capture_and_restore_through_an_s3_store(s3_service, redis_factory):
    """The same history kept in an S3 bucket: segments and bases are
    objects there (none on local disk), and a restore to T reads them
    back, checks them and is exact."""
    service, endpoint, bucket = s3_service
    g = gauss(service)
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    instance_id = service.adopt(redis)
    batch(redis, "zero")
    enable(g, instance_id)
    wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5, on_fail=service.log)
    batch(redis, "one")
    time.sleep(1.0)
    t, want = time.time(), digest(redis)
    time.sleep(1.0)
    batch(redis, "two")
    wait_until("covered", lambda: covered(g, instance_id, t), timeout=20, interval=0.5, on_fail=service.log)
    with urllib.request.urlopen(f"{endpoint}/{bucket}?list-type=2&prefix=sdk/", timeout=10) as r:
        listing = r.read().decode()
    assert f"/{instance_id}/pitr/log/" in listing and ".seg</Key>" in listing, listing[:2000]
    assert f"/{instance_id}/pitr/bases/" in listing, listing[:2000]
    for dirpath, _, files in os.walk(service.data_dir):
        assert not [f for f in files if f.endswith((".seg", ".rdb"))], (dirpath, files)
    job = wait_job(g, restore_to(g, instance_id, t))
    assert job.status == "Completed", (job, service.log())
    assert digest(redis) == want


# Test-only time scale (src/pitr/mod.rs `scale`): a policy minute lasts
# 1 s and a day 25 s, so interval=5 is a base every 5 s, keep_days=1
# keeps 25 s.
SCALE = {"DCS_BACKUP_TEST_PITR_MINUTE_MS": "1000", "DCS_BACKUP_TEST_PITR_DAY_MS": "25000"}


def holder(services, instance_id):
    node = services[0].sql(f"SELECT owner FROM pitr_leases WHERE instance_id = '{instance_id}'")[0][0]
    for s in services:
        with open(os.path.join(s.data_dir, "node-id")) as f:
            if f.read().strip() == node:
                return s
    pytest.fail(f"no service holds the lease ({node})")


def test_a_recent_backup_spares_the_source_a_periodic_base(tmp_path, redis_factory):
    """interval=5 (5 s at the test scale): while a backup of the same
    history is never older than that, the capture takes no base of its
    own (one fork fewer on the source); once backups stop, it does."""
    from test_backups import start_backup, wait_backup

    svc = Service(str(tmp_path))
    svc.env = dict(SCALE)
    svc.start()
    try:
        g, client = gauss(svc), svc.client()
        redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
        instance_id = svc.adopt(redis)
        enable(g, instance_id, interval=5, keep_days=1)
        wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5,
                   on_fail=svc.log)
        own = lambda: int(svc.sql(f"SELECT count(*) FROM pitr_bases WHERE instance_id = '{instance_id}'")[0][0])
        first = own()
        until = time.time() + 12
        while time.time() < until:
            batch(redis, f"t{int(time.time() * 1000)}", n=50)
            backup_id = start_backup(client, instance_id, "rdb")
            assert wait_backup(client, instance_id, backup_id).status == "succeed"
            time.sleep(1.5)
        assert own() == first, f"a periodic base was taken although a backup was recent\n{svc.log()}"
        wait_until("a periodic base once backups stop", lambda: own() > first, timeout=20, interval=0.5,
                   on_fail=svc.log)
    finally:
        svc.stop()


def test_a_standalone_masters_periodic_bases_are_derived_without_a_fork(tmp_path, redis_factory):
    """With a sandbox server configured, a master with no replica is not
    asked for periodic bases: the previous base is loaded in a scratch
    server, the log replayed into it, and its snapshot stored as a base
    at the log's end. The master forks once (the capture link's own full
    sync) and never again; a restore starting from a derived base is
    exact."""
    svc = Service(str(tmp_path))
    svc.env = dict(SCALE, DCS_BACKUP_SANDBOX_SERVERS=f"redis={REDIS_SERVER}")
    svc.start()
    try:
        g = gauss(svc)
        redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
        batch(redis, "zero")
        instance_id = svc.adopt(redis)
        enable(g, instance_id, interval=5, keep_days=1)
        wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5,
                   on_fail=svc.log)
        forks = lambda: int(redis.info("stats")["total_forks"])
        bases = lambda: svc.sql(
            f"SELECT id, manifest FROM pitr_bases WHERE instance_id = '{instance_id}' ORDER BY taken_at")
        first_forks, first_bases = forks(), len(bases())
        for tag in ("one", "two", "three", "four"):
            batch(redis, tag)
            time.sleep(2.0)
        wait_until("a derived base", lambda: len(bases()) > first_bases, timeout=30, interval=0.5,
                   on_fail=svc.log)
        assert forks() == first_forks, f"a periodic base made the master fork\n{svc.log()}"
        _, manifest = bases()[-1]
        source = json.loads(manifest)["files"][0]["source_node"]
        assert source != f"127.0.0.1:{redis.port}", source
        assert "base derived in a scratch server" in svc.log()
        batch(redis, "five")
        time.sleep(1.0)
        t, want = time.time(), digest(redis)
        wait_until("covered", lambda: covered(g, instance_id, t), timeout=20, interval=0.5, on_fail=svc.log)
        expected = svc.sql(
            f"SELECT id FROM pitr_bases WHERE instance_id = '{instance_id}' AND ready_at <= {int(t * 1000)} "
            "ORDER BY ready_at DESC LIMIT 1")[0][0]
        assert expected != bases()[0][0], "the newest base before T is a derived one"
        job_id = restore_to(g, instance_id, t)
        job = wait_job(g, job_id)
        assert job.status == "Completed", (job, svc.log())
        assert digest(redis) == want, f"a restore from a derived base differs\n{svc.log()}"
        used = svc.sql(f"SELECT backup_id FROM restores WHERE id = '{job_id}'")[0][0]
        assert used == expected, (used, expected)
        # The scratch servers are gone.
        sandboxes = os.path.join(svc.data_dir, "sandboxes")
        assert not os.path.isdir(sandboxes) or not os.listdir(sandboxes), os.listdir(sandboxes)
    finally:
        svc.stop()


def test_bases_every_interval_retention_once_over_two_replicas_and_orphans(tmp_path, redis_factory):
    first = Service(str(tmp_path / "a"))
    first.env = dict(SCALE)
    first.start()
    second = first.replica(str(tmp_path / "b"))
    services = [first, second]
    killed = None
    try:
        second.start()
        g = gauss(first)
        redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
        instance_id = first.adopt(redis)
        enable(g, instance_id, interval=5, keep_days=1)
        wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5,
                   on_fail=first.log)
        # Orphans a crash could leave: a segment file whose row never
        # landed, old; and one just written (as a live capture's would be).
        log_dir = os.path.join(first.data_dir, "backups", first.project_id, instance_id, "pitr", "log", "main")
        old_orphan = os.path.join(log_dir, "f" * 40 + "-00000000000000000001.seg")
        young_orphan = os.path.join(log_dir, "e" * 40 + "-00000000000000000001.seg")
        os.makedirs(log_dir, exist_ok=True)
        for path in (old_orphan, young_orphan):
            with open(path, "wb") as f:
                f.write(b"left by a crash")
        os.utime(old_orphan, (time.time() - 3600, time.time() - 3600))
        marks = []
        start = time.time()
        while time.time() - start < 45:
            pipe(redis, resp("SET", "tick", str(len(marks))) + resp("INCR", "n"))
            time.sleep(0.5)
            marks.append((time.time(), digest(redis)))
            time.sleep(0.5)
            if not killed and time.time() - start > 15:
                # The holder dies: the other replica takes capture (and
                # retention) over.
                h = holder(services, instance_id)
                h.proc.send_signal(signal.SIGKILL)
                h.proc.wait()
                killed = h
        survivor = second if killed is first else first
        g = gauss(survivor)
        wait_until("the last mark covered", lambda: covered(g, instance_id, marks[-1][0]), timeout=30, interval=0.5,
                   on_fail=survivor.log)
        # Capture (and retention) stop: the store holds still for the checks.
        stopped = time.time() * 1000
        g.set_redis_pitr_policy(
            SetRedisPitrPolicyRequest(instance_id=instance_id, body=SetRedisPitrPolicyRequestBody(enabled=False))
        )
        time.sleep(5)
        logs = first.log() + second.log()
        # A base every interval: at least one per 5 s after the first.
        bases = survivor.sql(f"SELECT id, taken_at, ready_at FROM pitr_bases WHERE instance_id = '{instance_id}' ORDER BY taken_at")
        assert "periodic base stored" in logs, logs
        # Retention: nothing ready before now - 25 s survives but the one
        # base a restore to the window's start needs; each removal once.
        removed = [line.split("base=")[1].split()[0] for line in logs.splitlines() if "base past retention removed" in line]
        assert removed, logs
        assert len(removed) == len(set(removed)), removed
        ready = sorted(int(b[2]) for b in bases)
        assert sum(1 for r in ready if r <= stopped - 28_000) <= 1, (ready, stopped)
        store_bases = os.listdir(os.path.join(first.data_dir, "backups", first.project_id, instance_id, "pitr", "bases"))
        assert sorted(store_bases) == sorted(b[0] for b in bases), (store_bases, bases)
        rows = survivor.sql(f"SELECT object_key FROM pitr_segments WHERE instance_id = '{instance_id}'")
        files = {
            os.path.relpath(os.path.join(d, f), os.path.join(first.data_dir, "backups"))
            for d, _, fs in os.walk(log_dir) for f in fs
        }
        assert not os.path.exists(old_orphan), "the old orphan was not swept"
        assert os.path.exists(young_orphan), "a young file without a row was removed"
        files.discard(os.path.relpath(young_orphan, os.path.join(first.data_dir, "backups")))
        assert files == {r[0] for r in rows}, files ^ {r[0] for r in rows}
        # Nothing still needed was removed: the earliest restorable second
        # and the latest restore exactly; a restore replays at most about
        # one interval of log (base no older than 5 s + a tick + transfer).
        ps = periods(g, instance_id)
        # What is left starts at the one base kept from before the window
        # (a restore to the window's start needs it), not earlier.
        assert ps[0][0] >= ready[0] / 1000 - 1, (ps, ready)
        inside = [m for m in marks if any(a <= m[0] <= b for a, b in ps)]
        for t, want in (inside[0], inside[-1]):
            job_id = restore_to(g, instance_id, t)
            job = wait_job(g, job_id)
            assert job.status == "Completed", (job, survivor.log())
            assert digest(redis) == want
            base = survivor.sql(
                f"SELECT b.taken_at FROM restores r JOIN pitr_bases b ON b.id = r.backup_id "
                f"WHERE r.id = '{job_id}'"
            )
            assert t * 1000 - int(base[0][0]) <= 5_000 + 4_000, (t, base)
        # Older than the window: not restorable.
        with pytest.raises(ClientRequestException) as e:
            restore_to(g, instance_id, marks[0][0])
        assert sdk_error(e).status_code == 400
    finally:
        for s in sorted(services, key=lambda s: s.owner):  # the database's owner last
            if s is killed:
                s.proc = None
            s.stop()


# --------------------------------------------------------------------------
# Run once: a cluster, and a silent link.
# --------------------------------------------------------------------------


def start_cluster(redis_factory, masters=3):
    nodes = [
        redis_factory.new(
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-port", str(free_port()), "--repl-diskless-sync-delay", "0"]
        )
        for _ in range(masters)
    ]
    redis_factory.start(*nodes)
    r = subprocess.run(
        [REDIS_CLI, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes], "--cluster-yes"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(
        "cluster ok",
        lambda: all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in nodes)
        and all(len(n.cli("CLUSTER", "NODES").splitlines()) == masters for n in nodes),
        timeout=30,
    )
    return nodes


def cluster_state(nodes):
    out = {}
    for n in nodes:
        for (db, key), v in state(n).items():
            assert key not in out, f"{key} on two nodes"
            out[key] = v
    return out


def cluster_batch(nodes, tag):
    c = redispy.RedisCluster(host="127.0.0.1", port=nodes[0].port)
    p = c.pipeline(transaction=False)
    for i in range(300):
        p.set(f"c:{i}", f"{tag}-{i}")
    for i in range(20):
        p.incrby(f"{{mig}}:n{i}", 3)  # not idempotent: a repeat shows
        p.set(f"{{mig}}:s{i}", tag, px=3_600_000)
    p.hset("c:h", tag, "1")
    p.set(f"c:only:{tag}", tag, ex=7200)
    p.delete("c:0")
    p.execute()
    c.close()


@ONCE
def test_a_three_shard_cluster_restores_to_t_even_while_a_slot_migrates(service, redis_factory):
    g = gauss(service)
    nodes = start_cluster(redis_factory)
    instance_id = service.adopt(nodes[0])
    cluster_batch(nodes, "zero")
    enable(g, instance_id)
    wait_until("a restorable period", lambda: periods(g, instance_id), timeout=40, interval=0.5, on_fail=service.log)
    marks = []
    for tag in ("one", "two"):
        cluster_batch(nodes, tag)
        time.sleep(1.0)
        marks.append((time.time(), cluster_state(nodes)))
        time.sleep(1.0)
    wait_until("the last mark covered", lambda: covered(g, instance_id, marks[-1][0]), timeout=30, interval=0.5,
               on_fail=service.log)
    shards = service.sql(f"SELECT COUNT(DISTINCT shard) FROM pitr_bases WHERE instance_id = '{instance_id}'")
    assert shards == [["3"]], shards
    t, want = marks[0]
    job = wait_job(g, restore_to(g, instance_id, t), timeout=120)
    assert job.status == "Completed", (job, service.log())
    same_state(cluster_state(nodes), want)
    # The slot of {mig} starts moving to another master: its owner answers
    # ASK for every key it no longer holds, during the load and the replay.
    slot = key_slot(b"{mig}")
    ids = {n.port: n.cli("CLUSTER", "MYID") for n in nodes}
    owner = next(n for n in nodes if n.cli("CLUSTER", "COUNTKEYSINSLOT", str(slot)) != "0")
    other = next(n for n in nodes if n is not owner)
    assert other.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[owner.port]) == "OK"
    assert owner.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[other.port]) == "OK"
    t, want = marks[1]
    job = wait_job(g, restore_to(g, instance_id, t), timeout=120)
    assert job.status == "Completed", (job, service.log())
    same_state(cluster_state(nodes), want)
    assert "sent again" in service.log(), "the replay met no redirect"


@ONCE
def test_a_silent_link_outlives_the_masters_repl_timeout(service, redis_factory):
    g = gauss(service)
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0", "--repl-timeout", "5"]))
    instance_id = service.adopt(redis)
    enable(g, instance_id)
    wait_until("a restorable period", lambda: periods(g, instance_id), timeout=30, interval=0.5, on_fail=service.log)
    batch(redis, "before")
    time.sleep(15)  # nothing written: three times repl-timeout
    batch(redis, "after")
    time.sleep(1.0)
    t, want = time.time(), digest(redis)
    wait_until("the write covered", lambda: covered(g, instance_id, t), timeout=20, interval=0.5, on_fail=service.log)
    # One link all along: no second full sync, no gap.
    assert "timeout" not in redis.log().lower(), redis.log()
    assert redis.info("replication")["connected_slaves"] == "1"
    bases = service.sql(f"SELECT COUNT(*) FROM pitr_bases WHERE instance_id = '{instance_id}'")
    assert bases == [["1"]], bases
    assert len(periods(g, instance_id)) == 1
    job = wait_job(g, restore_to(g, instance_id, t))
    assert job.status == "Completed", (job, service.log())
    assert digest(redis) == want
