"""Logs fit where they go: no colour codes in a file, JSON lines with the
job's and instance's ids for log collectors."""

import json
import os

import pytest
from huaweicloudsdkdcs.v2 import (
    BackupInstanceBody,
    CopyInstanceRequest,
    ListBackupRecordsRequest,
)

from conftest import Service, wait_until


@pytest.fixture(scope="module")
def json_service(tmp_path_factory):
    old = os.environ.get("DCS_BACKUP_LOG_FORMAT")
    os.environ["DCS_BACKUP_LOG_FORMAT"] = "json"
    svc = Service(str(tmp_path_factory.mktemp("jsonlog")))
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()
        if old is None:
            os.environ.pop("DCS_BACKUP_LOG_FORMAT", None)
        else:
            os.environ["DCS_BACKUP_LOG_FORMAT"] = old


def backup(svc, client, iid):
    r = client.copy_instance(
        CopyInstanceRequest(instance_id=iid, body=BackupInstanceBody(remark="logs", backup_format="rdb"))
    )
    bid = r.backup_id
    seen = {}

    def done():
        recs = client.list_backup_records(ListBackupRecordsRequest(instance_id=iid, limit=10))
        seen["rec"] = next(x for x in recs.backup_record_response if x.backup_id == bid)
        return seen["rec"].status not in ("waiting", "backuping")

    wait_until("the backup", done, timeout=60, on_fail=svc.log)
    assert seen["rec"].status == "succeed", seen["rec"]
    return bid


def test_json_log_lines_carry_the_job_and_instance_ids(json_service, redis):
    redis.cli("SET", "k", "v")
    client = json_service.client()
    iid = json_service.adopt(redis)
    bid = backup(json_service, client, iid)
    lines = open(json_service.log_path, "rb").read().decode().splitlines()
    events = []
    for line in lines:
        assert line.startswith("{"), f"not a JSON line: {line!r}"
        events.append(json.loads(line))
    assert all({"timestamp", "level", "message"} <= set(e) for e in events), events[:3]
    # Events logged while the backup ran, in any task of the job, name it.
    about_job = [
        e for e in events
        if any(s.get("record_id") == bid and s.get("instance_id") == iid for s in e.get("spans", []))
    ]
    assert about_job, "no log line names the backup's job and instance:\n" + "\n".join(lines[-30:])
    assert {e["level"] for e in about_job} <= {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"}
    # And nothing about the job is an ERROR for a backup that succeeded.
    assert not [e for e in about_job if e["level"] == "ERROR"], about_job


def test_text_logs_to_a_file_have_no_colour_codes(service, redis):
    service.adopt(redis)
    text = open(service.log_path, "rb").read()
    assert b"dcs-backup serving" in text
    assert b"\x1b[" not in text, text[:300]
