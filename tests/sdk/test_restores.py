"""Real restores driven by the official SDK: back a server up, change its
data (new keys, deleted keys, other TTLs, other types), restore, and check
with DEBUG DIGEST that the dataset is exactly the backup's again and the
server is a master afterwards. A backup of one instance restored into
another (v1.0 listing names the source). Refusals: deleted backup
(DCS.4087), unknown or foreign backup (DCS.4800), busy instance
(DCS.4096 / DCS.4097), remark too long (DCS.4098)."""

import datetime
import json
import re
import secrets
import subprocess
import time
import uuid

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    DeleteBackupFileRequest,
    DeleteSingleInstanceRequest,
    ListBackupRecordsRequest,
    ListRestoreRecordsRequest,
    RestoreInstanceBody,
    RestoreInstanceRequest,
)

from conftest import REDIS_CLI, sdk_error, unique, wait_until
from test_backups import digest, fill, pipe, record, resp, start_backup, wait_backup

RESTORE_NAME = re.compile(r"^restore_\d{14}$")
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def restore(client, instance_id, backup_id, remark="sdk restore"):
    r = client.restore_instance(
        RestoreInstanceRequest(instance_id=instance_id, body=RestoreInstanceBody(backup_id=backup_id, remark=remark))
    )
    assert r.status_code == 200, r
    assert uuid.UUID(r.restore_id), r
    return r.restore_id


def restore_records(client, instance_id):
    listing = client.list_restore_records(ListRestoreRecordsRequest(instance_id=instance_id, limit=1000))
    return listing.restore_record_response or []


def restore_record(client, instance_id, restore_id):
    for r in restore_records(client, instance_id):
        if r.restore_id == restore_id:
            return r
    pytest.fail(f"restore {restore_id} not listed for {instance_id}")


def wait_restore(service, client, instance_id, restore_id, timeout=30):
    """Polls the restore list until the restore leaves waiting/restoring."""
    deadline = time.monotonic() + timeout
    while True:
        r = restore_record(client, instance_id, restore_id)
        if r.status not in ("waiting", "restoring"):
            return r
        assert time.monotonic() < deadline, f"restore never finished: {r}\n{service.log()}"
        time.sleep(0.1)


def backup_now(client, instance_id, fmt="rdb", remark="before the change"):
    backup_id = start_backup(client, instance_id, fmt, remark=remark)
    rec = wait_backup(client, instance_id, backup_id)
    assert rec.status == "succeed", rec
    return rec


def mutate(redis):
    """Changes the filled dataset every way a restore has to undo."""
    cmds = [resp("SELECT", 0)]
    cmds += [resp("DEL", f"str:0:{i}") for i in range(0, 200, 3)]
    cmds += [resp("SET", f"new:{i}", f"after-{i}") for i in range(50)]
    cmds.append(resp("SET", "str:0:1", "overwritten"))
    cmds.append(resp("PERSIST", "hash:big"))  # a TTL removed
    cmds.append(resp("PEXPIRE", "ttl", 5_000_000))  # a TTL changed
    cmds.append(resp("PEXPIRE", "list:small", 9_000_000))  # a TTL added
    cmds.append(resp("HSET", "hash:small", "f3", "v3"))
    cmds.append(resp("XADD", "stream", "100-0", "field", "late"))
    cmds.append(resp("ZADD", "zset:small", 99, "z"))
    cmds.append(resp("DEL", "set:int"))
    cmds.append(resp("SET", "set:int", "now a string"))  # a type changed
    cmds.append(resp("SELECT", 1))
    cmds.append(resp("DEL", "list:big", "stream", "long"))
    cmds.append(resp("LPUSH", "list:small", "front"))
    cmds.append(resp("SELECT", 7))
    cmds.append(resp("FLUSHDB"))  # a whole database emptied
    cmds.append(resp("SELECT", 3))
    cmds += [resp("SET", f"only-after:{i}", i) for i in range(20)]  # a database that was empty
    pipe(redis, b"".join(cmds))


def role(redis):
    return redis.info("replication").get("role")


def dbsizes(redis):
    return {db: int(redis.cli("-n", str(db), "DBSIZE")) for db in (0, 1, 3, 7)}


def compact(iso):
    return datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").strftime("%Y%m%d%H%M%S")


def expect(fn, status, code):
    with pytest.raises(ClientRequestException) as e:
        fn()
    err = sdk_error(e)
    assert (err.status_code, err.error_code) == (status, code), err
    assert err.error_msg, err
    return err


@pytest.fixture(scope="module")
def source(service, client, redis_factory):
    """Instance A: filled, adopted under a known name, one RDB backup taken.
    (redis, instance_id, name, backup record, digest at backup time, sizes)."""
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    fill(redis)
    name = unique("restore-src")
    instance_id = service.adopt(redis, name=name)
    want = digest(redis)
    sizes = dbsizes(redis)
    rec = backup_now(client, instance_id, remark="before the change")
    assert digest(redis) == want, "the backup changed the source"
    return dict(redis=redis, id=instance_id, name=name, backup=rec, digest=want, sizes=sizes)


# --------------------------------------------------------------------------
# restoring into the instance the backup came from
# --------------------------------------------------------------------------


def test_restore_undoes_every_change_since_the_backup(service, client, source):
    redis, iid, backup = source["redis"], source["id"], source["backup"]
    mutate(redis)
    assert digest(redis) != source["digest"]
    assert dbsizes(redis)[3] == 20

    before = time.time()
    restore_id = restore(client, iid, backup.backup_id, remark="put it back")
    rec = wait_restore(service, client, iid, restore_id)
    assert rec.status == "succeed", f"{rec}\n{service.log()}"

    # The dataset is the backup's, byte for byte as far as DEBUG DIGEST can
    # tell (values, types, absolute expiry times, every database).
    assert digest(redis) == source["digest"]
    assert dbsizes(redis) == source["sizes"]
    assert redis.cli("-n", "3", "EXISTS", "only-after:0") == "0"
    assert redis.cli("GET", "str:0:1") == "value-1"
    assert redis.cli("TYPE", "set:int") == "set"
    assert int(redis.cli("PTTL", "hash:big")) > 0, "the removed TTL is back"
    assert redis.cli("PTTL", "list:small") == "-1", "the added TTL is gone"

    # The server is a master again, not left replicating from the service.
    repl = redis.info("replication")
    assert repl.get("role") == "master", repl
    assert "master_host" not in repl, repl
    assert redis.cli("SET", "writable", "yes") == "OK"
    redis.cli("DEL", "writable")

    # The record.
    assert rec.restore_id == restore_id
    assert rec.backup_id == backup.backup_id
    assert rec.backup_name == backup.backup_name
    assert rec.backup_remark == "before the change"
    assert rec.restore_remark == "put it back"
    assert rec.progress == "100.00", rec
    assert rec.error_code is None, rec
    assert RESTORE_NAME.match(rec.restore_name), rec
    assert ISO_MS.match(rec.created_at) and ISO_MS.match(rec.updated_at), rec
    assert rec.restore_name == "restore_" + compact(rec.created_at), rec
    assert rec.updated_at >= rec.created_at
    created = datetime.datetime.strptime(rec.created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc
    )
    assert abs(created.timestamp() - before) < 5, (rec.created_at, before)

    # A restore makes no backup record and leaves the backup restorable.
    listing = client.list_backup_records(ListBackupRecordsRequest(instance_id=iid, limit=1000))
    assert [b.backup_id for b in listing.backup_record_response] == [backup.backup_id]
    assert record(client, iid, backup.backup_id).is_support_restore == "TRUE"

    # Restoring the same backup again is fine and changes nothing.
    again = restore(client, iid, backup.backup_id, remark="")
    rec2 = wait_restore(service, client, iid, again)
    assert rec2.status == "succeed", rec2
    assert rec2.restore_remark == ""
    assert digest(redis) == source["digest"]
    assert [r.restore_id for r in restore_records(client, iid)][:2] == [again, restore_id]
    service.assert_alive()


def test_restore_into_another_instance_names_the_source(service, client, redis_factory, source):
    target = redis_factory.start(redis_factory.plain())
    target.cli("SET", "only-on-b", "x")
    target.cli("-n", "5", "HSET", "b-hash", "f", "v")
    diskless_load = target.cli("CONFIG", "GET", "repl-diskless-load").splitlines()[-1]
    b_name = unique("restore-dst")
    b_id = service.adopt(target, name=b_name)
    a_digest_now = digest(source["redis"])

    restore_id = restore(client, b_id, source["backup"].backup_id, remark="copy of A")
    rec = wait_restore(service, client, b_id, restore_id)
    assert rec.status == "succeed", f"{rec}\n{service.log()}"
    assert digest(target) == source["digest"]
    assert target.cli("EXISTS", "only-on-b") == "0"
    assert target.cli("-n", "5", "DBSIZE") == "0"
    assert role(target) == "master"
    assert target.cli("CONFIG", "GET", "repl-diskless-load").splitlines()[-1] == diskless_load
    # A is untouched and lists no restore of B's.
    assert digest(source["redis"]) == a_digest_now
    assert restore_id not in [r.restore_id for r in restore_records(client, source["id"])]

    assert (rec.backup_id, rec.backup_name, rec.backup_remark) == (
        source["backup"].backup_id, source["backup"].backup_name, "before the change",
    )
    # v1.0 names the source instance (the key spelled both ways).
    resp_ = service.signed("GET", f"/v1.0/{service.project_id}/instances/{b_id}/restores")
    assert resp_.status_code == 200, resp_.text
    body = resp_.json()
    assert body["total_num"] == 1, body
    (v1,) = body["restore_record_response"]
    assert v1["restore_id"] == restore_id
    assert v1["sourceInstanceId"] == source["id"], v1
    assert v1["sourceInstanceID"] == source["id"], v1
    assert v1["sourceInstanceName"] == source["name"], v1
    assert v1["status"] == "succeed" and v1["progress"] == "100.00", v1
    # v2 does not carry them.
    resp_ = service.signed("GET", f"/v2/{service.project_id}/instances/{b_id}/restores")
    assert resp_.status_code == 200, resp_.text
    (v2,) = resp_.json()["restore_record_response"]
    assert not {"sourceInstanceId", "sourceInstanceID", "sourceInstanceName"} & set(v2), v2


def test_restore_into_an_empty_master_with_a_replica(service, client, redis_pair, source):
    """Its own replica follows the restored master."""
    master, replica = redis_pair
    iid = service.adopt(master)
    restore_id = restore(client, iid, source["backup"].backup_id)
    rec = wait_restore(service, client, iid, restore_id)
    assert rec.status == "succeed", f"{rec}\n{service.log()}"
    assert digest(master) == source["digest"]
    assert role(master) == "master"
    assert master.cli("CONFIG", "GET", "repl-diskless-load").splitlines()[-1] == "disabled"

    def replica_caught_up():
        info = replica.info("replication")
        return (
            info.get("master_link_status") == "up"
            and info.get("master_port") == str(master.port)
            and replica.cli("DEBUG", "DIGEST") == source["digest"]
        )

    wait_until("the replica to follow the restored master", replica_caught_up, timeout=20,
               interval=0.2, on_fail=lambda: master.log() + replica.log())


def test_expired_keys_stay_expired_and_ttls_stay_absolute(service, client, redis_factory):
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    t0 = time.monotonic()
    redis.cli("SET", "soon", "v", "PX", "1500")
    redis.cli("SET", "later", "v", "PX", "86400000")
    redis.cli("-n", "2", "HSET", "h", "f", "v")
    redis.cli("-n", "2", "PEXPIRE", "h", "3600000")
    redis.cli("SET", "forever", "v")
    want_later = redis.cli("PEXPIRETIME", "later")
    want_h = redis.cli("-n", "2", "PEXPIRETIME", "h")
    iid = service.adopt(redis)
    backup = backup_now(client, iid)
    redis.cli("FLUSHALL")
    time.sleep(max(0.0, t0 + 1.7 - time.monotonic()))
    restore_id = restore(client, iid, backup.backup_id)
    assert wait_restore(service, client, iid, restore_id).status == "succeed"
    assert redis.cli("EXISTS", "soon") == "0", "a key expired since the backup came back"
    assert redis.cli("PEXPIRETIME", "later") == want_later
    assert redis.cli("-n", "2", "PEXPIRETIME", "h") == want_h
    assert redis.cli("PTTL", "forever") == "-1"


def test_an_aof_backup_restores_too(service, client, redis_factory):
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    fill(redis)
    want = digest(redis)
    sizes = dbsizes(redis)
    iid = service.adopt(redis)
    backup = backup_now(client, iid, fmt="aof", remark="aof one")
    assert backup.backup_format == "AOF"
    mutate(redis)
    assert digest(redis) != want
    restore_id = restore(client, iid, backup.backup_id, remark="from aof")
    rec = wait_restore(service, client, iid, restore_id)
    assert rec.status == "succeed", f"{rec}\n{service.log()}"
    assert (rec.backup_remark, rec.restore_remark, rec.progress) == ("aof one", "from aof", "100.00")
    assert digest(redis) == want
    assert dbsizes(redis) == sizes
    assert role(redis) == "master"


# --------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------


def assert_no_restores(client, instance_id):
    listing = client.list_restore_records(ListRestoreRecordsRequest(instance_id=instance_id))
    assert not listing.restore_record_response, listing


def test_a_deleted_backup_cannot_be_restored(service, client, redis_factory):
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    redis.cli("SET", "k", "v")
    iid = service.adopt(redis)
    backup = backup_now(client, iid)
    client.delete_backup_file(DeleteBackupFileRequest(instance_id=iid, backup_id=backup.backup_id))
    assert record(client, iid, backup.backup_id).status == "deleted"
    redis.cli("SET", "k", "changed")
    expect(lambda: restore(client, iid, backup.backup_id), 400, "DCS.4087")
    assert_no_restores(client, iid)
    assert redis.cli("GET", "k") == "changed"


def test_unknown_or_malformed_backup_ids_are_refused(service, client, source):
    iid = source["id"]
    before = [r.restore_id for r in restore_records(client, iid)]
    for bad in (str(uuid.uuid4()), "not-a-backup-id", ""):
        err = expect(lambda: restore(client, iid, bad), 400, "DCS.4800")
        assert "backup_id" in err.error_msg, err
    assert [r.restore_id for r in restore_records(client, iid)] == before


def test_a_backup_of_another_project_is_unknown(service, client, redis_factory, source):
    other_project = "rst" + secrets.token_hex(8)
    cred = service.credential_create(other_project)
    other = service.client(cred["ak"], cred["sk"], other_project)
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    redis.cli("SET", "theirs", "v")
    their_iid = service.adopt(redis, client=other)
    theirs = backup_now(other, their_iid, remark="theirs")
    before = [r.restore_id for r in restore_records(client, source["id"])]
    # Their backup into our instance, and ours into theirs: as if unknown.
    expect(lambda: restore(client, source["id"], theirs.backup_id), 400, "DCS.4800")
    expect(lambda: restore(other, their_iid, source["backup"].backup_id), 400, "DCS.4800")
    assert [r.restore_id for r in restore_records(client, source["id"])] == before
    assert_no_restores(other, their_iid)
    assert redis.cli("DBSIZE") == "1"


def test_a_remark_over_128_characters_is_refused(service, client, source):
    expect(lambda: restore(client, source["id"], source["backup"].backup_id, remark="r" * 129), 400, "DCS.4098")


def test_no_restore_while_a_backup_runs(service, client, redis_factory):
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    redis.cli("SET", "k", "v1")
    iid = service.adopt(redis)
    good = backup_now(client, iid, remark="good")
    redis.cli("SET", "k", "v2")
    # The next backup waits 3 s before its snapshot starts.
    redis.cli("CONFIG", "SET", "repl-diskless-sync-delay", "3")
    running = start_backup(client, iid, "rdb", remark="slow")
    expect(lambda: restore(client, iid, good.backup_id), 400, "DCS.4096")
    assert_no_restores(client, iid)
    assert record(client, iid, running).status in ("waiting", "backuping")
    assert wait_backup(client, iid, running).status == "succeed"
    # Once it is done, the restore is accepted.
    redis.cli("CONFIG", "SET", "repl-diskless-sync-delay", "0")
    restore_id = restore(client, iid, good.backup_id)
    assert wait_restore(service, client, iid, restore_id).status == "succeed"
    assert redis.cli("GET", "k") == "v1"


def test_no_backup_or_second_restore_while_a_restore_runs(service, client, redis_factory):
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    redis.cli("SET", "k", "v1")
    iid = service.adopt(redis)
    good = backup_now(client, iid)
    redis.cli("SET", "k", "v2")
    # The server answers nothing for 2 s: the restore cannot finish before.
    pause = subprocess.Popen(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(redis.port), "CLIENT", "PAUSE", "2000", "ALL"],
        stdout=subprocess.DEVNULL,
    )
    assert pause.wait(timeout=5) == 0
    first = restore(client, iid, good.backup_id, remark="first")
    expect(lambda: restore(client, iid, good.backup_id, remark="second"), 400, "DCS.4097")
    expect(lambda: start_backup(client, iid, "rdb", remark="during"), 400, "DCS.4097")
    assert [r.restore_id for r in restore_records(client, iid)] == [first]
    listing = client.list_backup_records(ListBackupRecordsRequest(instance_id=iid))
    assert listing.total_num == 1, listing
    rec = wait_restore(service, client, iid, first)
    assert rec.status == "succeed", f"{rec}\n{service.log()}"
    assert redis.cli("GET", "k") == "v1"
    # Free again.
    backup_now(client, iid, remark="after")


def test_a_target_that_refuses_replicaof_gets_the_universal_path(service, client, redis_factory, source):
    """No REPLICAOF on the target: the RDB is restored with RESTORE pipelines."""
    target = redis_factory.start(redis_factory.new(["--rename-command", "REPLICAOF", ""]))
    target.cli("SET", "only-here", "x")
    iid = service.adopt(target)
    restore_id = restore(client, iid, source["backup"].backup_id)
    rec = wait_restore(service, client, iid, restore_id)
    assert rec.status == "succeed", f"{rec}\n{service.log()}"
    assert digest(target) == source["digest"]
    assert target.cli("EXISTS", "only-here") == "0"
    assert role(target) == "master"


def test_a_password_protected_target_and_acl_user_target(service, client, redis_factory, source):
    pw = redis_factory.start(redis_factory.with_password())
    acl = redis_factory.start(redis_factory.with_acl_user())
    pw_id = service.adopt(pw, password=pw.password)
    acl_id = service.adopt(acl, password=acl.password, access_user=acl.user)
    ids = [restore(client, pw_id, source["backup"].backup_id), restore(client, acl_id, source["backup"].backup_id)]
    for iid, rid, target in zip((pw_id, acl_id), ids, (pw, acl)):
        rec = wait_restore(service, client, iid, rid)
        assert rec.status == "succeed", f"{rec}\n{service.log()}"
        assert digest(target) == source["digest"]
        assert role(target) == "master"


def test_a_backup_of_a_deleted_instance_still_restores_elsewhere(service, client, redis_factory):
    gone = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    gone.cli("SET", "from-the-deleted-one", "yes")
    gone.cli("RPUSH", "l", "a", "b")
    want = digest(gone)
    gone_name = unique("deleted-src")
    gone_id = service.adopt(gone, name=gone_name)
    backup = backup_now(client, gone_id, remark="last one")
    client.delete_single_instance(DeleteSingleInstanceRequest(instance_id=gone_id))

    target = redis_factory.start(redis_factory.plain())
    target_id = service.adopt(target)
    restore_id = restore(client, target_id, backup.backup_id)
    rec = wait_restore(service, client, target_id, restore_id)
    assert rec.status == "succeed", f"{rec}\n{service.log()}"
    assert digest(target) == want
    body = service.signed("GET", f"/v1.0/{service.project_id}/instances/{target_id}/restores").json()
    (v1,) = body["restore_record_response"]
    assert (v1["sourceInstanceId"], v1["sourceInstanceName"]) == (gone_id, gone_name), v1


def test_v1_restore_and_its_error_body(service, client, redis_factory, source):
    target = redis_factory.start(redis_factory.plain())
    iid = service.adopt(target)
    path = f"/v1.0/{service.project_id}/instances/{iid}/restores"
    r = service.signed("POST", path, body=json.dumps({"backup_id": source["backup"].backup_id, "remark": "v1"}))
    assert r.status_code == 200, r.text
    restore_id = r.json()["restore_id"]
    rec = wait_restore(service, client, iid, restore_id)
    assert (rec.status, rec.restore_remark) == ("succeed", "v1"), rec
    assert digest(target) == source["digest"]
    r = service.signed("POST", path, body=json.dumps({"backup_id": str(uuid.uuid4())}))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "111400800" and err["message"], err
