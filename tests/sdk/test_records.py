"""Backup and restore record listings (the seed APIs) through the official
SDK, over records made with `dcs-backup dev seed` at known times."""

import datetime
import re
import uuid

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    ListBackupRecordsRequest,
    ListBackupRecordsResponse,
    ListRestoreRecordsRequest,
    ListRestoreRecordsResponse,
)

from conftest import sdk_error

BACKUPS = 250
RESTORES = 120
FROM = "20240101000000"
FROM_DT = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
STEP_MS = 1500  # records fall on whole and half seconds; some seconds hold none

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PROGRESS = re.compile(r"^(100|[1-9]?\d)\.\d{2}$")


def at(i):
    """created_at of the i-th seeded record."""
    return FROM_DT + datetime.timedelta(milliseconds=i * STEP_MS)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def compact(dt):
    return dt.strftime("%Y%m%d%H%M%S")


def parse_iso(s):
    assert ISO_MS.match(s), s
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def index(rec):
    """Which seeded record this is (seed remarks are `seed {i}`)."""
    remark = getattr(rec, "remark", None) or rec.restore_remark
    m = re.fullmatch(r"seed (\d+)", remark)
    assert m, remark
    return int(m.group(1))


@pytest.fixture(scope="module")
def seeded(service, redis_factory):
    r1, r2 = redis_factory.start(redis_factory.plain(), redis_factory.plain())
    full = service.adopt(r1, name="records-full")
    empty = service.adopt(r2, name="records-empty")
    out = service.seed(full, backups=BACKUPS, restores=RESTORES, from_=FROM, step_ms=STEP_MS)
    assert (out["backups"], out["restores"]) == (BACKUPS, RESTORES)
    return {"full": full, "empty": empty}


def backups(client, iid, **kw):
    resp = client.list_backup_records(ListBackupRecordsRequest(instance_id=iid, **kw))
    assert isinstance(resp, ListBackupRecordsResponse)
    return resp


def restores(client, iid, **kw):
    resp = client.list_restore_records(ListRestoreRecordsRequest(instance_id=iid, **kw))
    assert isinstance(resp, ListRestoreRecordsResponse)
    return resp


def all_pages(list_fn, field, limit, **kw):
    items, offset, totals = [], 0, set()
    while True:
        resp = list_fn(limit=limit, offset=offset, **kw)
        page = getattr(resp, field) or []
        totals.add(resp.total_num)
        assert len(page) <= limit
        if not page:
            return items, totals
        items += page
        offset += len(page)


# --------------------------------------------------------------------------
# backups
# --------------------------------------------------------------------------


def test_backups_newest_first_with_total(client, seeded):
    resp = backups(client, seeded["full"], limit=1000)
    assert resp.status_code == 200
    recs = resp.backup_record_response
    assert resp.total_num == BACKUPS
    assert len(recs) == BACKUPS
    created = [parse_iso(b.created_at) for b in recs]
    assert all(a > b for a, b in zip(created, created[1:])), "not strictly newest first"
    assert [index(b) for b in recs] == list(range(BACKUPS - 1, -1, -1))
    assert created == [at(i) for i in range(BACKUPS - 1, -1, -1)]
    assert len({b.backup_id for b in recs}) == BACKUPS


def test_backups_default_page_is_ten_newest(client, seeded):
    resp = backups(client, seeded["full"])
    assert resp.total_num == BACKUPS
    assert [index(b) for b in resp.backup_record_response] == list(range(BACKUPS - 1, BACKUPS - 11, -1))


@pytest.mark.parametrize("limit", [1, 7, 100, 249, 250, 1000])
def test_backup_paging_returns_each_record_once(client, seeded, limit):
    everything = backups(client, seeded["full"], limit=1000).backup_record_response
    items, totals = all_pages(
        lambda **kw: backups(client, seeded["full"], **kw), "backup_record_response", limit
    )
    assert totals == {BACKUPS}, "total_num must count all matches, not the page"
    assert [b.backup_id for b in items] == [b.backup_id for b in everything]


def test_backup_page_past_the_end_is_empty_200(client, seeded):
    for offset in (BACKUPS, BACKUPS + 1, 10**6):
        resp = backups(client, seeded["full"], offset=offset, limit=10)
        assert resp.status_code == 200
        assert resp.backup_record_response == []
        assert resp.total_num == BACKUPS


def test_backups_of_instance_without_records(client, seeded):
    resp = backups(client, seeded["empty"])
    assert resp.status_code == 200
    assert resp.backup_record_response == []
    assert resp.total_num == 0


def sec(dt):
    return dt.replace(microsecond=0)


def second(dt, delta=0):
    return compact(sec(dt) + datetime.timedelta(seconds=delta))


def expected(n, begin=None, end=None):
    """Indices (newest first) whose created_at lies in [begin, end+0.999s]."""
    lo = datetime.datetime.strptime(begin, "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc) if begin else None
    hi = (
        datetime.datetime.strptime(end, "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc)
        + datetime.timedelta(milliseconds=999)
        if end
        else None
    )
    return [i for i in range(n - 1, -1, -1) if (lo is None or at(i) >= lo) and (hi is None or at(i) <= hi)]


# (begin, end, what must / must not be in the answer)
K_EVEN, K_ODD = 100, 101  # at(100) is on a whole second, at(101) on a half second
EDGE_CASES = {
    "begin on an exact record": (second(at(K_EVEN)), None, K_EVEN, True),
    "begin one second after it": (second(at(K_EVEN), 1), None, K_EVEN, False),
    "begin on a half-second record's second": (second(at(K_ODD)), None, K_ODD, True),
    "begin one second after the half-second record": (second(at(K_ODD), 1), None, K_ODD, False),
    "end on an exact record": (None, second(at(K_EVEN)), K_EVEN, True),
    "end one second before it": (None, second(at(K_EVEN), -1), K_EVEN, False),
    "end on a half-second record's second (inclusive to .999)": (None, second(at(K_ODD)), K_ODD, True),
    "end one second before the half-second record": (None, second(at(K_ODD), -1), K_ODD, False),
    "begin = end = the record's second": (second(at(K_ODD)), second(at(K_ODD)), K_ODD, True),
    "first record, from the start": (FROM, FROM, 0, True),
    "last record, to the end": (second(at(BACKUPS - 1)), second(at(BACKUPS - 1)), BACKUPS - 1, True),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_backup_time_filter_edges(client, seeded, case):
    begin, end, k, included = EDGE_CASES[case]
    kw = {k_: v for k_, v in (("begin_time", begin), ("end_time", end)) if v}
    resp = backups(client, seeded["full"], limit=1000, **kw)
    got = [index(b) for b in resp.backup_record_response]
    assert (k in got) == included, (case, kw)
    want = expected(BACKUPS, begin, end)
    assert got == want
    assert resp.total_num == len(want)


def test_backup_time_window_total_counts_matches_not_page(client, seeded):
    begin, end = second(at(40)), second(at(89))
    want = expected(BACKUPS, begin, end)
    assert len(want) == 50
    resp = backups(client, seeded["full"], begin_time=begin, end_time=end, limit=10, offset=5)
    assert resp.total_num == 50
    assert [index(b) for b in resp.backup_record_response] == want[5:15]
    items, totals = all_pages(
        lambda **kw: backups(client, seeded["full"], **kw),
        "backup_record_response", 9, begin_time=begin, end_time=end,
    )
    assert totals == {50}
    assert [index(b) for b in items] == want


def test_backup_window_without_records_is_empty_200(client, seeded):
    # at(1) = 1.5 s and at(2) = 3.0 s: second 2 holds no record.
    gap = compact(FROM_DT + datetime.timedelta(seconds=2))
    assert expected(BACKUPS, gap, gap) == []
    for kw in (
        dict(begin_time=gap, end_time=gap),
        dict(end_time=second(FROM_DT, -1)),
        dict(begin_time=second(at(BACKUPS - 1), 1)),
    ):
        resp = backups(client, seeded["full"], **kw)
        assert resp.status_code == 200, kw
        assert resp.backup_record_response == [], kw
        assert resp.total_num == 0, kw


def test_backup_record_fields(client, seeded):
    recs = backups(client, seeded["full"], limit=1000).backup_record_response
    statuses = set()
    for b in recs:
        statuses.add(b.status)
        created = parse_iso(b.created_at)
        assert uuid.UUID(b.backup_id)
        assert b.instance_id == seeded["full"]
        assert b.backup_name == "backup_" + compact(created), b
        assert b.backup_type in ("manual", "auto"), b
        assert b.backup_format in ("RDB", "AOF"), b
        assert b.status in ("waiting", "backuping", "succeed", "failed", "expired", "deleted"), b
        assert PROGRESS.match(b.progress) and 0 <= float(b.progress) <= 100, b
        assert isinstance(b.size, int) and b.size >= 0, b
        parse_iso(b.updated_at)
        if b.execution_at is not None:
            parse_iso(b.execution_at)
        assert b.is_support_restore == ("TRUE" if b.status == "succeed" else "FALSE"), b
        if b.status == "succeed":
            assert b.progress == "100.00", b
            assert b.error_code is None, b
        if b.status == "failed":
            assert re.fullmatch(r"dcs\.08\.000[1-8]", b.error_code or ""), b
        if b.backup_type == "manual":
            assert b.period is None, b
    # The seed mixes statuses, types and formats; make sure all were seen.
    assert {"succeed", "failed", "expired"} <= statuses
    assert {b.backup_type for b in recs} == {"manual", "auto"}
    assert {b.backup_format for b in recs} == {"RDB", "AOF"}


def test_backup_records_raw_json_shape(service, seeded):
    """What the SDK hides: the exact JSON keys and value types."""
    resp = service.signed(
        "GET", f"/v2/{service.project_id}/instances/{seeded['full']}/backups", {"limit": "3"}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"backup_record_response", "total_num"}
    assert body["total_num"] == BACKUPS
    for b in body["backup_record_response"]:
        assert set(b) >= {
            "backup_id", "instance_id", "backup_name", "backup_type", "backup_format", "status",
            "progress", "size", "period", "remark", "created_at", "execution_at", "updated_at",
            "error_code", "is_support_restore",
        }
        assert isinstance(b["progress"], str) and isinstance(b["size"], int)
        assert isinstance(b["is_support_restore"], str)


# --------------------------------------------------------------------------
# restores
# --------------------------------------------------------------------------


def test_restores_newest_first_paging_and_fields(client, seeded):
    resp = restores(client, seeded["full"], limit=1000)
    assert resp.status_code == 200
    recs = resp.restore_record_response
    assert resp.total_num == RESTORES == len(recs)
    assert [index(r) for r in recs] == list(range(RESTORES - 1, -1, -1))
    created = [parse_iso(r.created_at) for r in recs]
    assert created == [at(i) for i in range(RESTORES - 1, -1, -1)]

    # The seed restores its first backup.
    first_backup = backups(client, seeded["full"], limit=1, offset=BACKUPS - 1).backup_record_response[0]
    assert index(first_backup) == 0
    for r in recs:
        assert uuid.UUID(r.restore_id)
        assert r.backup_id == first_backup.backup_id
        assert r.restore_name == "restore_" + compact(parse_iso(r.created_at)), r
        assert r.status in ("waiting", "restoring", "succeed", "failed"), r
        assert PROGRESS.match(r.progress), r
        parse_iso(r.updated_at)
        if r.status == "succeed":
            assert r.error_code is None, r
    assert {r.status for r in recs} == {"succeed", "failed"}
    assert len({r.restore_id for r in recs}) == RESTORES

    for limit in (1, 11, 120):
        items, totals = all_pages(
            lambda **kw: restores(client, seeded["full"], **kw), "restore_record_response", limit
        )
        assert totals == {RESTORES}
        assert [r.restore_id for r in items] == [r.restore_id for r in recs]


def test_succeeded_restores_show_full_progress(client, seeded):
    recs = restores(client, seeded["full"], limit=1000).restore_record_response
    done = [r for r in recs if r.status == "succeed"]
    assert done
    assert {r.progress for r in done} == {"100.00"}


@pytest.mark.parametrize("case", list(EDGE_CASES)[:-1])
def test_restore_time_filter_edges(client, seeded, case):
    begin, end, k, included = EDGE_CASES[case]
    kw = {k_: v for k_, v in (("begin_time", begin), ("end_time", end)) if v}
    want = expected(RESTORES, begin, end)
    resp = restores(client, seeded["full"], limit=1000, **kw)
    if not want:
        assert resp.status_code == 204
        return
    got = [index(r) for r in resp.restore_record_response]
    assert (k in got) == included, (case, kw)
    assert got == want
    assert resp.total_num == len(want)


def assert_sdk_204(resp):
    """What the SDK makes of a 204: no exception, an empty response object."""
    assert isinstance(resp, ListRestoreRecordsResponse)
    assert resp.status_code == 204
    assert resp.raw_content == b""
    assert resp.restore_record_response is None
    assert resp.total_num is None


def test_no_restores_is_204_and_the_sdk_returns_an_empty_response(client, seeded):
    assert_sdk_204(restores(client, seeded["empty"]))
    gap = compact(FROM_DT + datetime.timedelta(seconds=2))
    assert_sdk_204(restores(client, seeded["full"], begin_time=gap, end_time=gap))
    assert_sdk_204(restores(client, seeded["full"], begin_time=second(at(RESTORES - 1), 1)))
    assert_sdk_204(restores(client, seeded["full"], end_time=second(FROM_DT, -1)))


def test_restore_page_past_the_end(client, seeded):
    # Records match, the page is just empty: still a 200 with the count.
    resp = restores(client, seeded["full"], offset=RESTORES, limit=10)
    assert resp.status_code == 200
    assert resp.restore_record_response == []
    assert resp.total_num == RESTORES


# --------------------------------------------------------------------------
# 5. bad parameters
# --------------------------------------------------------------------------

BAD_PARAMS = [
    (dict(limit=0), "DCS.4800", "Invalid limit in the request."),
    (dict(limit=1001), "DCS.4800", "Invalid limit in the request."),
    (dict(limit=-5), "DCS.4800", "Invalid limit in the request."),
    (dict(limit="ten"), "DCS.4800", "Invalid limit in the request."),
    (dict(offset=-1), "DCS.4800", "Invalid offset in the request."),
    (dict(offset="x"), "DCS.4800", "Invalid offset in the request."),
    (dict(begin_time="2017"), "DCS.4800", "Invalid begin_time in the request."),
    (dict(begin_time="20170230000000"), "DCS.4800", "Invalid begin_time in the request."),
    (dict(begin_time="2017-01-01T00:00:00Z"), "DCS.4800", "Invalid begin_time in the request."),
    (dict(end_time="20171301000000"), "DCS.4800", "Invalid end_time in the request."),
    (dict(end_time="20170101246000"), "DCS.4800", "Invalid end_time in the request."),
    (dict(end_time="201701010000001"), "DCS.4800", "Invalid end_time in the request."),
    (
        dict(begin_time="20170102000000", end_time="20170101235959"),
        "DCS.4025",
        "The end time must be after the start time.",
    ),
]


@pytest.mark.parametrize("kind", ["backups", "restores"])
@pytest.mark.parametrize("params,code,msg", BAD_PARAMS, ids=[str(p[0]) for p in BAD_PARAMS])
def test_bad_list_parameters(client, seeded, kind, params, code, msg):
    fn = backups if kind == "backups" else restores
    with pytest.raises(ClientRequestException) as ei:
        fn(client, seeded["full"], **params)
    e = sdk_error(ei)
    assert (e.status_code, e.error_code, e.error_msg) == (400, code, msg), str(e)


@pytest.mark.parametrize("kind", ["backups", "restores"])
def test_boundary_parameters_are_accepted(client, seeded, kind):
    fn = backups if kind == "backups" else restores
    field = "backup_record_response" if kind == "backups" else "restore_record_response"
    assert len(getattr(fn(client, seeded["full"], limit=1), field)) == 1
    assert fn(client, seeded["full"], limit=1000).status_code == 200
    assert fn(client, seeded["full"], offset=0).status_code == 200
    t = second(at(5))
    assert [index(r) for r in getattr(fn(client, seeded["full"], begin_time=t, end_time=t), field)] == [5]


@pytest.mark.parametrize("kind", ["backups", "restores"])
def test_unknown_and_malformed_instance(client, kind):
    fn = backups if kind == "backups" else restores
    with pytest.raises(ClientRequestException) as ei:
        fn(client, str(uuid.uuid4()))
    e = sdk_error(ei)
    assert (e.status_code, e.error_code) == (404, "DCS.3022"), str(e)
    for bad in ("not-a-uuid", "12345", str(uuid.uuid4())[:-1], str(uuid.uuid4()).replace("-", "")):
        with pytest.raises(ClientRequestException) as ei:
            fn(client, bad)
        e = sdk_error(ei)
        assert (e.status_code, e.error_code) == (400, "DCS.4061"), (bad, str(e))
    # A malformed id is reported before bad parameters.
    with pytest.raises(ClientRequestException) as ei:
        fn(client, "not-a-uuid", limit=0)
    assert sdk_error(ei).error_code == "DCS.4061"


def test_alternative_spellings_from_the_reference(service, seeded):
    """beginTime / begin_Time / endTime / end_Time and 1-based `start`, which
    the SDK never sends but scripts written from the reference do."""
    base = f"/v2/{service.project_id}/instances/{seeded['full']}/backups"
    b, e = second(at(10)), second(at(19))
    want = expected(BACKUPS, b, e)
    for bn, en in (("beginTime", "endTime"), ("begin_Time", "end_Time")):
        resp = service.signed("GET", base, {bn: b, en: e, "limit": "100"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["total_num"] == len(want) == 10
        assert [int(x["remark"].split()[1]) for x in body["backup_record_response"]] == want
    resp = service.signed("GET", base, {"start": "3", "limit": "2"})
    assert [int(x["remark"].split()[1]) for x in resp.json()["backup_record_response"]] == [
        BACKUPS - 3, BACKUPS - 4,
    ]
    resp = service.signed("GET", base, {"beginTime": "2017"})
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "DCS.4800"
    assert resp.json()["error_msg"] == "Invalid beginTime in the request."


# --------------------------------------------------------------------------
# v1.0 listings (no SDK speaks them any more: raw requests, SDK signer)
# --------------------------------------------------------------------------


def test_v1_lists(service, seeded):
    base = f"/v1.0/{service.project_id}/instances/{seeded['full']}"
    resp = service.signed("GET", base + "/backups", {"start": "2", "limit": "3"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total_num"] == BACKUPS
    assert [int(b["remark"].split()[1]) for b in body["backup_record_response"]] == [
        BACKUPS - 2, BACKUPS - 3, BACKUPS - 4,
    ]
    b, e = second(at(10)), second(at(12))
    resp = service.signed("GET", base + "/restores", {"beginTime": b, "endTime": e})
    assert resp.status_code == 200, resp.text
    recs = resp.json()["restore_record_response"]
    assert [int(r["restore_remark"].split()[1]) for r in recs] == [12, 11, 10]
    for r in recs:
        # The reference spells the key both ways: both are there.
        assert r["sourceInstanceID"] == r["sourceInstanceId"] == seeded["full"]
        assert r["sourceInstanceName"] == "records-full"


@pytest.mark.parametrize(
    "query,code,message",
    [
        ({"start": "0"}, "111400800", "Invalid start in the request."),
        ({"limit": "0"}, "111400800", "Invalid limit in the request."),
        ({"beginTime": "2017"}, "111400800", "Invalid beginTime in the request."),
        ({"beginTime": "20170102000000", "endTime": "20170101000000"}, "111400025",
         "The end time must be after the start time."),
    ],
)
def test_v1_errors_have_the_v1_body(service, seeded, query, code, message):
    resp = service.signed("GET", f"/v1.0/{service.project_id}/instances/{seeded['full']}/backups", query)
    assert resp.status_code == 400
    assert resp.json() == {"error": {"code": code, "message": message}}


def test_v1_unknown_and_malformed_instance(service):
    resp = service.signed("GET", f"/v1.0/{service.project_id}/instances/{uuid.uuid4()}/backups")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "111404022"
    resp = service.signed("GET", f"/v1.0/{service.project_id}/instances/nope/restores")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "111400061"
