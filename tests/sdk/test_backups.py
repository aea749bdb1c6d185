"""Real backups driven by the official SDK: start one, poll the record list
until it succeeds, ask for download links, download the file with plain
urllib, and check it with Redis's own tools and by loading it into a fresh
server (same DEBUG DIGEST). Then one-job-at-a-time and deletion."""

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    BackupInstanceBody,
    CopyInstanceRequest,
    DeleteBackupFileRequest,
    DownloadBackupFilesReq,
    ListBackupFileLinksRequest,
    ListBackupRecordsRequest,
)

from conftest import REDIS_CLI, ROOT, Service, free_port, sdk_error, wait_until

REDIS_CHECK_RDB = shutil.which("redis-check-rdb") or "redis-check-rdb"
REDIS_CHECK_AOF = shutil.which("redis-check-aof") or "redis-check-aof"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def pipe(redis, data):
    """Sends raw RESP through `redis-cli --pipe`; every reply must be OK."""
    r = subprocess.run(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(redis.port), "--pipe"],
        input=data,
        capture_output=True,
        timeout=60,
    )
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and "errors: 0" in out, out + r.stderr.decode(errors="replace")


def fill(redis):
    """Every type, three databases, binary names, and keys with TTLs."""
    cmds = []
    for db in (0, 1, 7):
        cmds.append(resp("SELECT", db))
        for i in range(200):
            cmds.append(resp("SET", f"str:{db}:{i}", f"value-{i}"))
        cmds.append(resp("SET", "int", 123456))
        cmds.append(resp("SET", "long", "abcdefgh" * 400))
        cmds.append(resp("SET", b"bin\x00key\xff", b"\x00\x01binary\xff"))
        cmds.append(resp("SET", "ttl", "v", "PX", 86_400_000))
        cmds.append(resp("RPUSH", "list:small", "a", "b", 1, -2))
        cmds.append(resp("RPUSH", "list:big", *[f"element-{i}-{'x' * (i % 30)}" for i in range(500)]))
        cmds.append(resp("SADD", "set:int", 1, 2, 3, -5, 100000))
        cmds.append(resp("SADD", "set:big", *[f"member-{i}" for i in range(600)]))
        cmds.append(resp("ZADD", "zset:small", 1.5, "a", -2, "b", "inf", "c"))
        zbig = []
        for i in range(300):
            zbig += [f"{i}.{i * 7}", f"m{i}"]
        cmds.append(resp("ZADD", "zset:big", *zbig))
        cmds.append(resp("HSET", "hash:small", "f1", "v1", "f2", 22))
        hbig = []
        for i in range(300):
            hbig += [f"field-{i}", i * 3]
        cmds.append(resp("HSET", "hash:big", *hbig))
        cmds.append(resp("PEXPIRE", "hash:big", 7_200_000))
        for i in range(1, 40):
            cmds.append(resp("XADD", "stream", f"{i}-0", "field", f"v{i}"))
        cmds.append(resp("XGROUP", "CREATE", "stream", "g1", "0"))
        cmds.append(resp("XREADGROUP", "GROUP", "g1", "alice", "COUNT", 5, "STREAMS", "stream", ">"))
    pipe(redis, b"".join(cmds))


def digest(redis):
    d = redis.cli("DEBUG", "DIGEST")
    assert len(d) == 40 and d != "0" * 40, d
    return d


def start_backup(client, instance_id, fmt, remark="sdk"):
    resp_ = client.copy_instance(
        CopyInstanceRequest(instance_id=instance_id, body=BackupInstanceBody(remark=remark, backup_format=fmt))
    )
    assert resp_.status_code == 200, resp_
    assert resp_.backup_id
    return resp_.backup_id


def record(client, instance_id, backup_id):
    listing = client.list_backup_records(ListBackupRecordsRequest(instance_id=instance_id, limit=1000))
    for r in listing.backup_record_response or []:
        if r.backup_id == backup_id:
            return r
    pytest.fail(f"backup {backup_id} not listed: {listing}")


def wait_backup(client, instance_id, backup_id, timeout=40):
    """Polls the record list until the backup leaves waiting/backuping."""
    deadline = time.monotonic() + timeout
    while True:
        r = record(client, instance_id, backup_id)
        if r.status not in ("waiting", "backuping"):
            return r
        assert time.monotonic() < deadline, f"backup never finished: {r}"
        time.sleep(0.1)


def links(client, instance_id, backup_id, expiration=300):
    return client.list_backup_file_links(
        ListBackupFileLinksRequest(
            instance_id=instance_id,
            backup_id=backup_id,
            body=DownloadBackupFilesReq(expiration=expiration),
        )
    )


def download(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200, r.status
        return r.read()


def check_tool(tool, path):
    r = subprocess.run([tool, path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{tool} rejected {path}:\n{r.stdout}\n{r.stderr}"


def server_loading(redis_factory, rdb_bytes):
    """A fresh redis-server that loads `rdb_bytes` at start-up."""
    s = redis_factory.new(["--dbfilename", "seed.rdb"])
    with open(os.path.join(s.dir, "seed.rdb"), "wb") as f:
        f.write(rdb_bytes)
    return redis_factory.start(s)


@pytest.fixture()
def filled(service, redis_factory):
    """A standalone server full of data, adopted; (redis, instance_id, digest)."""
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    fill(redis)
    instance_id = service.adopt(redis)
    return redis, instance_id, digest(redis)


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_rdb_backup_downloads_as_the_servers_exact_dataset(service, client, redis_factory, filled, tmp_path):
    redis, instance_id, want = filled
    backup_id = start_backup(client, instance_id, "rdb")
    rec = wait_backup(client, instance_id, backup_id)
    assert rec.status == "succeed", rec
    assert rec.backup_format == "RDB"
    assert rec.backup_type == "manual"
    assert rec.remark == "sdk"
    assert rec.progress == "100.00"
    assert rec.is_support_restore == "TRUE"
    assert rec.error_code is None

    got = links(client, instance_id, backup_id)
    assert got.status_code == 200
    assert len(got.links) == 1, got
    item = got.links[0]
    assert item.file_name.startswith(f"redis_127.0.0.1_{redis.port}_") and item.file_name.endswith(".rdb"), item
    data = download(item.link)
    assert len(data) == rec.size
    assert data[:5] == b"REDIS"

    path = tmp_path / item.file_name
    path.write_bytes(data)
    check_tool(REDIS_CHECK_RDB, str(path))
    copy = server_loading(redis_factory, data)
    assert digest(copy) == want
    assert copy.cli("-n", "7", "DBSIZE") == redis.cli("-n", "7", "DBSIZE")
    service.assert_alive()


def test_aof_backup_replays_into_the_same_dataset(service, client, redis_factory, filled, tmp_path):
    redis, instance_id, want = filled
    backup_id = start_backup(client, instance_id, "aof")
    rec = wait_backup(client, instance_id, backup_id)
    assert rec.status == "succeed", rec
    assert rec.backup_format == "AOF"
    assert rec.is_support_restore == "TRUE"

    got = links(client, instance_id, backup_id)
    assert len(got.links) == 1, got
    item = got.links[0]
    assert item.file_name.endswith(".aof"), item
    data = download(item.link)
    assert len(data) == rec.size

    path = tmp_path / item.file_name
    path.write_bytes(data)
    check_tool(REDIS_CHECK_AOF, str(path))
    empty = redis_factory.start(redis_factory.plain())
    pipe(empty, data)
    assert digest(empty) == want
    service.assert_alive()


def test_a_second_backup_while_one_runs_is_refused(service, client, redis_factory):
    redis = redis_factory.start(redis_factory.plain())
    redis.cli("SET", "k", "v")
    # The first backup waits 3 s before its snapshot starts.
    redis.cli("CONFIG", "SET", "repl-diskless-sync-delay", "3")
    instance_id = service.adopt(redis)
    first = start_backup(client, instance_id, "rdb")
    with pytest.raises(ClientRequestException) as e:
        start_backup(client, instance_id, "rdb", remark="second")
    err = sdk_error(e)
    assert (err.status_code, err.error_code) == (400, "DCS.4096"), err
    with pytest.raises(ClientRequestException) as e:
        start_backup(client, instance_id, "aof", remark="third")
    assert (sdk_error(e).status_code, sdk_error(e).error_code) == (400, "DCS.4096")
    # Nothing was recorded for the refused ones; the first one completes.
    listing = client.list_backup_records(ListBackupRecordsRequest(instance_id=instance_id))
    assert listing.total_num == 1, listing
    assert wait_backup(client, instance_id, first).status == "succeed"
    # Once it is done, the next one is accepted.
    redis.cli("CONFIG", "SET", "repl-diskless-sync-delay", "0")
    second = start_backup(client, instance_id, "rdb", remark="after")
    assert wait_backup(client, instance_id, second).status == "succeed"


def test_delete_keeps_the_record_and_refuses_links(service, client, redis_factory):
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    redis.cli("SET", "k", "v")
    instance_id = service.adopt(redis)
    backup_id = start_backup(client, instance_id, "rdb")
    assert wait_backup(client, instance_id, backup_id).status == "succeed"
    old_link = links(client, instance_id, backup_id).links[0].link
    assert download(old_link)[:5] == b"REDIS"

    resp_ = client.delete_backup_file(DeleteBackupFileRequest(instance_id=instance_id, backup_id=backup_id))
    assert resp_.status_code in (200, 204), resp_
    rec = record(client, instance_id, backup_id)
    assert rec.status == "deleted", rec
    assert rec.is_support_restore == "FALSE"

    with pytest.raises(ClientRequestException) as e:
        # Another expiration: the same signed request again would be a replay.
        links(client, instance_id, backup_id, expiration=600)
    assert sdk_error(e).status_code == 400
    with pytest.raises(urllib.error.HTTPError) as e:
        download(old_link)
    assert e.value.code == 404, "an old link no longer serves the file"
    # Deleting again is harmless. (A second identical signed DELETE within
    # the same second would carry the same signature: a replay, refused.)
    time.sleep(1)
    client.delete_backup_file(DeleteBackupFileRequest(instance_id=instance_id, backup_id=backup_id))
    assert record(client, instance_id, backup_id).status == "deleted"
    service.assert_alive()


# --------------------------------------------------------------------------
# the same through an S3 store (moto on loopback): links are presigned
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_service(tmp_path_factory):
    """A service storing its backups in a moto bucket; (service, endpoint, bucket)."""
    venv = os.environ.get("DCS_TEST_VENV") or os.path.join(ROOT, ".venv")
    moto = os.path.join(venv, "bin", "moto_server")
    if not os.path.exists(moto):
        moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    svc = None
    try:

        def up():
            assert proc.poll() is None, "moto_server exited"
            try:
                with urllib.request.urlopen(endpoint + "/", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until("moto_server", up, timeout=30)
        bucket = "sdk-backups"
        with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10) as r:
            assert r.status == 200
        svc = Service(str(tmp_path_factory.mktemp("svc-s3")))
        env = {
            "DCS_BACKUP_STORAGE": f"s3://{bucket}/sdk?endpoint={endpoint}&region=us-east-1&path_style=true",
            "AWS_ACCESS_KEY_ID": "sdk-test-access-key",
            "AWS_SECRET_ACCESS_KEY": "sdk-test-secret-key",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            svc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        yield svc, endpoint, bucket
    finally:
        if svc is not None:
            svc.stop()
        proc.kill()
        proc.wait()
        log.close()


def test_rdb_backup_to_s3_downloads_through_a_presigned_link(s3_service, redis_factory, tmp_path):
    service, endpoint, bucket = s3_service
    client = service.client()
    redis = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    fill(redis)
    want = digest(redis)
    instance_id = service.adopt(redis)
    backup_id = start_backup(client, instance_id, "rdb")
    rec = wait_backup(client, instance_id, backup_id)
    assert rec.status == "succeed", f"{rec}\n{service.log()}"

    got = links(client, instance_id, backup_id)
    assert got.bucket_name == bucket, got
    assert len(got.links) == 1, got
    link = got.links[0].link
    assert link.startswith(endpoint) and "X-Amz-Signature=" in link, link
    data = download(link)
    assert len(data) == rec.size
    path = tmp_path / got.links[0].file_name
    path.write_bytes(data)
    check_tool(REDIS_CHECK_RDB, str(path))
    assert digest(server_loading(redis_factory, data)) == want

    # With S3, the service's data dir holds no backup data.
    for dirpath, _, files in os.walk(service.data_dir):
        for f in files:
            assert backup_id not in os.path.join(dirpath, f) and not f.endswith((".rdb", ".aof")), f

    client.delete_backup_file(DeleteBackupFileRequest(instance_id=instance_id, backup_id=backup_id))
    assert record(client, instance_id, backup_id).status == "deleted"
    with pytest.raises(urllib.error.HTTPError) as e:
        download(link)
    assert e.value.code == 404, "the object is gone from the bucket"
