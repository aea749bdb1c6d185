"""Backup policies through the official SDK, on the wall clock.

The scheduler ticks every 5 s and plans windows by weekday and hour in the
policy's time zone. To get a window that contains "now" without waiting for
the next hour, each policy picks a `timezone_offset` in which the local time
is a couple of minutes past the hour: that hour's window is open for almost
an hour more. One zone is close to UTC; another is far enough from UTC that
its local date is not UTC's date (so the weekday must be the local one).
Windows that do not contain now (another weekday, the hour that just
closed, the next hour) and a manual policy must start nothing. Invalid
policies are refused one by one and leave the previous policy in place."""

import datetime
import re
import time

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    BackupPlan,
    BackupPolicy,
    ListBackupRecordsRequest,
    ModifyInstanceBody,
    ShowInstanceRequest,
    UpdateInstanceRequest,
)

from conftest import sdk_error, unique
from test_backups import start_backup

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
BACKUP_NAME = re.compile(r"^backup_\d{14}$")
TICK = 5  # seconds between scheduler passes
#: Local time in every chosen zone: this many seconds past the hour.
LOCAL_SECONDS_PAST = (120, 180)


# --------------------------------------------------------------------------
# time zones and windows
# --------------------------------------------------------------------------


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def tz_string(off_minutes):
    sign = "-" if off_minutes < 0 else "+"
    a = abs(off_minutes)
    return f"GMT{sign}{a // 60:02d}:{a % 60:02d}"


def candidate_offsets(now):
    """Offsets (minutes east, within ±12:00) in which local time is
    2–3 minutes past an hour."""
    want = (2 - now.minute) % 60
    return [off for off in range(-720, 721) if off % 60 == want]


class Zone:
    """A time zone and the local time in it."""

    def __init__(self, off_minutes, now):
        self.off = off_minutes
        self.tz = tz_string(off_minutes)
        self.local = now + datetime.timedelta(minutes=off_minutes)
        self.utc_date = now.date()

    def window(self, hours_from_now=0):
        """(weekday 1..7, begin_at) of the local window `hours_from_now` away."""
        t = self.local + datetime.timedelta(hours=hours_from_now)
        return t.isoweekday(), f"{t.hour:02d}:00-{(t.hour + 1) % 24:02d}:00"


def zones():
    now = utcnow()
    offs = candidate_offsets(now)
    near = min(offs, key=abs)
    # The far zone: the largest offset whose local date is not UTC's date
    # (there is one unless UTC is within minutes of noon).
    crossing = [o for o in offs if (now + datetime.timedelta(minutes=o)).date() != now.date()]
    far = max(crossing or offs, key=abs)
    z_near, z_far = Zone(near, now), Zone(far, now)
    past = z_near.local.minute * 60 + z_near.local.second
    assert LOCAL_SECONDS_PAST[0] <= past < LOCAL_SECONDS_PAST[1] + 1, z_near.local
    return z_near, z_far


def plan_policy(backup_at, begin_at, tz, backup_type="auto", save_days=1, period_type="weekly"):
    return BackupPolicy(
        backup_type=backup_type,
        save_days=save_days,
        periodical_backup_plan=BackupPlan(
            period_type=period_type, backup_at=list(backup_at), begin_at=begin_at, timezone_offset=tz
        ),
    )


# --------------------------------------------------------------------------
# SDK helpers
# --------------------------------------------------------------------------


def set_policy(client, iid, policy):
    r = client.update_instance(
        UpdateInstanceRequest(instance_id=iid, body=ModifyInstanceBody(instance_backup_policy=policy))
    )
    assert r.status_code == 204, r
    return r


def shown_policy(client, iid):
    return client.show_instance(ShowInstanceRequest(instance_id=iid)).instance_backup_policy


def backups(client, iid):
    listing = client.list_backup_records(ListBackupRecordsRequest(instance_id=iid, limit=1000))
    assert listing.total_num == len(listing.backup_record_response or []), listing
    return listing.backup_record_response or []


def autos(client, iid):
    return [b for b in backups(client, iid) if b.backup_type == "auto"]


def parse_iso(s):
    assert ISO_MS.match(s), s
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def wait_for_auto_backup(service, client, iid, timeout):
    """The first auto backup of `iid`, once it has finished."""
    deadline = time.monotonic() + timeout
    while True:
        found = autos(client, iid)
        if found and found[-1].status not in ("waiting", "backuping"):
            return found[-1]
        assert time.monotonic() < deadline, (
            f"no finished automatic backup after {timeout}s: {backups(client, iid)}\n{service.log()}"
        )
        time.sleep(0.2)


def sleep_until(t):
    """Sleeps until the wall-clock datetime `t`."""
    left = (t - utcnow()).total_seconds()
    if left > 0:
        time.sleep(left)


def assert_auto_backup(rec, iid, begin_at):
    assert rec.status == "succeed", rec
    assert rec.backup_type == "auto", rec
    assert rec.period == begin_at, rec
    assert rec.instance_id == iid, rec
    assert rec.backup_format == "RDB", rec
    assert rec.progress == "100.00", rec
    assert rec.is_support_restore == "TRUE", rec
    assert rec.error_code is None, rec
    assert not rec.remark, rec
    assert rec.size and rec.size > 0, rec
    assert BACKUP_NAME.match(rec.backup_name), rec
    assert rec.backup_name == "backup_" + parse_iso(rec.created_at).strftime("%Y%m%d%H%M%S"), rec


# --------------------------------------------------------------------------
# the planned instances: all set up at once, so their waits overlap
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planned(service, client, redis_factory):
    names = ["near", "far", "busy", "other_day", "just_closed", "next_hour", "manual"]
    servers = {n: redis_factory.new(["--repl-diskless-sync-delay", "0"]) for n in names}
    servers["busy"].args = ["--repl-diskless-sync-delay", "4"]
    redis_factory.start(*servers.values())
    ids = {}
    for n, s in servers.items():
        s.cli("SET", "key", n)
        ids[n] = service.adopt(s, name=unique(n.replace("_", "-")))

    near, far = zones()
    policies = {}
    day, begin = near.window()
    policies["near"] = (plan_policy([day], begin, near.tz), begin)
    fday, fbegin = far.window()
    policies["far"] = (plan_policy([fday], fbegin, far.tz), fbegin)
    policies["busy"] = (plan_policy([day], begin, near.tz), begin)
    policies["other_day"] = (plan_policy([d for d in range(1, 8) if d != day], begin, near.tz), begin)
    pday, pbegin = near.window(-1)
    policies["just_closed"] = (plan_policy([pday], pbegin, near.tz), pbegin)
    nday, nbegin = near.window(+1)
    policies["next_hour"] = (plan_policy([nday], nbegin, near.tz), nbegin)
    policies["manual"] = (plan_policy([day], begin, near.tz, backup_type="manual"), begin)

    # The busy instance has a manual backup running (4 s before its
    # snapshot even starts) when its window opens.
    manual = start_backup(client, ids["busy"], "rdb", remark="manual first")
    set_at = utcnow()
    for n, (p, _) in policies.items():
        set_policy(client, ids[n], p)
    return dict(
        ids=ids, servers=servers, policies=policies, near=near, far=far, set_at=set_at, busy_manual=manual,
    )


def test_show_instance_shows_the_policy(service, client, planned):
    iid = planned["ids"]["near"]
    policy, begin = planned["policies"]["near"]
    ibp = shown_policy(client, iid)
    assert ibp is not None
    p = ibp.policy
    assert (p.backup_type, p.save_days) == ("auto", 1)
    plan = p.periodical_backup_plan
    assert plan.period_type == "weekly"
    assert plan.backup_at == policy.periodical_backup_plan.backup_at
    assert plan.begin_at == begin
    assert plan.timezone_offset == planned["near"].tz
    assert ibp.backup_policy_id
    assert ISO_MS.match(ibp.created_at) and ISO_MS.match(ibp.updated_at), ibp
    assert ibp.updated_at >= ibp.created_at
    assert ibp.tenant_id == service.project_id
    # The far zone's plan comes back as written too.
    far = shown_policy(client, planned["ids"]["far"]).policy.periodical_backup_plan
    assert far.timezone_offset == planned["far"].tz
    assert far.begin_at == planned["policies"]["far"][1]


def test_one_auto_backup_in_the_window_that_contains_now(service, client, planned):
    iid = planned["ids"]["near"]
    policy, begin = planned["policies"]["near"]
    rec = wait_for_auto_backup(service, client, iid, timeout=15)
    assert_auto_backup(rec, iid, begin)
    created = parse_iso(rec.created_at)
    assert created >= planned["set_at"] - datetime.timedelta(seconds=1)
    assert created <= planned["set_at"] + datetime.timedelta(seconds=TICK + 3), (rec.created_at, planned["set_at"])

    # Setting the policy again (same window, other retention) keeps its
    # identity and does not open a second window.
    before = shown_policy(client, iid)
    time.sleep(0.01)
    set_policy(client, iid, plan_policy(policy.periodical_backup_plan.backup_at, begin,
                                        planned["near"].tz, save_days=2))
    after = shown_policy(client, iid)
    assert after.backup_policy_id == before.backup_policy_id
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at
    assert after.policy.save_days == 2

    # Two more ticks at least: still the only automatic backup.
    sleep_until(created + datetime.timedelta(seconds=2 * TICK + 1))
    got = backups(client, iid)
    assert [b.backup_id for b in got] == [rec.backup_id], got
    service.assert_alive()


def test_the_window_is_on_the_local_weekday_far_from_utc(service, client, planned):
    """Local date != UTC date in this zone (unless UTC is about noon)."""
    iid = planned["ids"]["far"]
    _, begin = planned["policies"]["far"]
    rec = wait_for_auto_backup(service, client, iid, timeout=15)
    assert_auto_backup(rec, iid, begin)
    sleep_until(parse_iso(rec.created_at) + datetime.timedelta(seconds=2 * TICK + 1))
    assert [b.backup_id for b in backups(client, iid)] == [rec.backup_id]


def test_a_busy_instance_gets_its_auto_backup_when_the_manual_one_ends(service, client, planned):
    iid = planned["ids"]["busy"]
    _, begin = planned["policies"]["busy"]
    rec = wait_for_auto_backup(service, client, iid, timeout=30)
    assert_auto_backup(rec, iid, begin)
    all_ = backups(client, iid)
    assert len(all_) == 2, all_
    manual = [b for b in all_ if b.backup_id == planned["busy_manual"]]
    assert len(manual) == 1 and manual[0].status == "succeed", all_
    assert manual[0].backup_type == "manual" and manual[0].period is None, manual
    # The auto backup was queued after the manual one ended.
    assert rec.created_at >= manual[0].updated_at, all_
    assert not [b for b in all_ if b.status == "failed"], all_


# --------------------------------------------------------------------------
# invalid policies
# --------------------------------------------------------------------------


def invalid_cases(base_day, base_begin, tz):
    def p(**kw):
        args = dict(backup_at=[base_day], begin_at=base_begin, tz=tz)
        args.update(kw)
        return plan_policy(**args)

    return [
        ("DCS.4073", "backup_type daily", p(backup_type="daily")),
        ("DCS.4073", "backup_type missing", p(backup_type=None)),
        ("DCS.4072", "save_days 0", p(save_days=0)),
        ("DCS.4072", "save_days 8", p(save_days=8)),
        ("DCS.4072", "save_days missing", p(save_days=None)),
        ("DCS.4074", "period_type daily", p(period_type="daily")),
        ("DCS.4074", "no plan", BackupPolicy(backup_type="auto", save_days=1)),
        ("DCS.4075", "backup_at empty", p(backup_at=[])),
        ("DCS.4075", "backup_at 0", p(backup_at=[0])),
        ("DCS.4075", "backup_at 8", p(backup_at=[8])),
        ("DCS.4075", "backup_at twice", p(backup_at=[base_day, base_day])),
        ("DCS.4076", "begin_at half past", p(begin_at="23:30-00:30")),
        ("DCS.4076", "begin_at two hours", p(begin_at="22:00-00:00")),
        ("DCS.4076", "begin_at 24", p(begin_at="24:00-01:00")),
        ("DCS.4076", "begin_at one digit", p(begin_at="1:00-2:00")),
        ("DCS.4076", "begin_at words", p(begin_at="now")),
        ("DCS.4800", "timezone_offset +13", p(tz="GMT+13:00")),
        ("DCS.4800", "timezone_offset minutes 75", p(tz="GMT+08:75")),
        ("DCS.4800", "timezone_offset a name", p(tz="Mars/Olympus")),
    ]


def test_invalid_policies_are_refused_and_keep_the_previous_one(service, client, redis_factory):
    redis = redis_factory.start(redis_factory.plain())
    iid = service.adopt(redis)
    near, _ = zones()
    # A valid policy whose window is twelve hours away.
    day, begin = near.window(12)
    set_policy(client, iid, plan_policy([day], begin, near.tz, save_days=3))
    before = shown_policy(client, iid).to_dict()
    assert before["policy"]["save_days"] == 3

    # Each invalid one would plan the window that contains now if accepted.
    now_day, now_begin = near.window()
    for code, what, policy in invalid_cases(now_day, now_begin, near.tz):
        with pytest.raises(ClientRequestException) as e:
            set_policy(client, iid, policy)
        err = sdk_error(e)
        assert (err.status_code, err.error_code) == (400, code), (what, err)
        assert err.error_msg, (what, err)
        if code == "DCS.4800":
            assert err.error_msg == "Invalid timezone_offset in the request.", (what, err)
        assert shown_policy(client, iid).to_dict() == before, f"{what} changed the policy"

    # A valid one is still accepted afterwards.
    set_policy(client, iid, plan_policy([day], begin, near.tz, save_days=5))
    assert shown_policy(client, iid).policy.save_days == 5
    assert backups(client, iid) == []


# --------------------------------------------------------------------------
# what must not start
# --------------------------------------------------------------------------


def test_nothing_starts_outside_the_planned_window_or_with_a_manual_policy(service, client, planned):
    # At least two ticks after the policies were set.
    sleep_until(planned["set_at"] + datetime.timedelta(seconds=2 * TICK + 1))
    for name in ("other_day", "just_closed", "next_hour", "manual"):
        got = backups(client, planned["ids"][name])
        assert got == [], f"{name}: {got}"
    manual = shown_policy(client, planned["ids"]["manual"]).policy
    assert manual.backup_type == "manual", manual
    assert manual.save_days == 1, manual
    # The planned ones did run: the scheduler was alive all along.
    for name in ("near", "far"):
        assert len(autos(client, planned["ids"][name])) == 1, name
    service.assert_alive()
