"""Adopting, showing, listing, modifying and deleting instances through the
official SDK, against real redis-server processes."""

import re
import time
import uuid

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    BackupPlan,
    BackupPolicy,
    DeleteSingleInstanceRequest,
    ListBackupRecordsRequest,
    ModifyInstanceBody,
    ShowInstanceRequest,
    UpdateInstanceRequest,
)

from conftest import sdk_error, unique

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def servers(redis_factory):
    """All the redis servers this module needs, started at once."""
    plain, pw, acl = redis_factory.start(
        redis_factory.plain(), redis_factory.with_password(), redis_factory.with_acl_user()
    )
    master, replica = redis_factory.start_pair()
    return {"plain": plain, "password": pw, "acl": acl, "master": master, "replica": replica}


def show(client, iid):
    return client.show_instance(ShowInstanceRequest(instance_id=iid))


def names_and_ids(service):
    resp = service.list_all()
    return resp.instance_num, {(i.instance_id, i.name) for i in resp.instances}


def expect_error(call, status, code, msg=None):
    with pytest.raises(ClientRequestException) as ei:
        call()
    e = sdk_error(ei)
    assert (e.status_code, e.error_code) == (status, code), str(e)
    if msg is not None:
        assert e.error_msg == msg, str(e)
    return e


# --------------------------------------------------------------------------
# 1. adopting a standalone server
# --------------------------------------------------------------------------


def test_adopt_standalone_shows_running_with_the_servers_own_version(service, client, servers):
    r = servers["plain"]
    name = unique("single")
    iid = service.adopt(r, name=name, description="adopted by the SDK suite")
    assert uuid.UUID(iid).version == 4 and str(uuid.UUID(iid)) == iid

    inst = show(client, iid)
    assert inst.status_code == 200
    assert inst.instance_id == iid
    assert inst.name == name
    assert inst.description == "adopted by the SDK suite"
    assert inst.status == "RUNNING"
    assert inst.engine == "Redis"
    assert inst.engine_version == r.info("server")["redis_version"]
    assert inst.cache_mode == "single"
    assert inst.replica_count == 0
    assert inst.ip == "127.0.0.1"
    assert inst.port == r.port
    assert inst.no_password_access == "true"
    assert inst.enable_ssl is False
    assert ISO_MS.match(inst.created_at), inst.created_at

    listed = service.list_all()
    assert listed.instance_num == len(listed.instances)
    mine = [i for i in listed.instances if i.instance_id == iid]
    assert len(mine) == 1
    assert (mine[0].name, mine[0].port, mine[0].status, mine[0].engine_version) == (
        name, r.port, "RUNNING", inst.engine_version,
    )

    # Filtering by exact name finds exactly this one.
    by_name = service.list_all(name=name, name_equal="true")
    assert by_name.instance_num == 1
    assert [i.instance_id for i in by_name.instances] == [iid]


def test_adopt_same_name_twice_is_refused(service, servers):
    name = unique("twice")
    service.adopt(servers["plain"], name=name)
    before = names_and_ids(service)
    expect_error(lambda: service.adopt(servers["plain"], name=name), 400, "DCS.4060")
    assert names_and_ids(service) == before


# --------------------------------------------------------------------------
# 2. topologies, passwords, ACL users, bad requests
# --------------------------------------------------------------------------


def test_adopt_master_with_replica_is_ha(service, client, servers):
    iid = service.adopt(servers["master"])
    inst = show(client, iid)
    assert inst.status == "RUNNING"
    assert inst.cache_mode == "ha"
    assert inst.replica_count == 1
    assert inst.port == servers["master"].port


def test_adopt_password_protected_server(service, client, servers):
    r = servers["password"]
    before = names_and_ids(service)
    wrong = unique("wrongpw")
    e = expect_error(lambda: service.adopt(r, name=wrong, password="not-the-password"), 400, "DCS.4080")
    assert e.error_msg
    # No password at all: the server refuses too.
    expect_error(lambda: service.adopt(r, name=wrong), 400, "DCS.4080")
    assert names_and_ids(service) == before, "a refused adoption stored something"

    iid = service.adopt(r, password=r.password)
    inst = show(client, iid)
    assert inst.status == "RUNNING"
    assert inst.no_password_access == "false"
    assert inst.engine_version == r.info("server")["redis_version"]
    # The password is never shown back.
    assert r.password not in str(inst.to_json_object())
    assert r.password not in inst.raw_content.decode()


def test_adopt_with_acl_user(service, client, servers):
    r = servers["acl"]
    before = names_and_ids(service)
    expect_error(
        lambda: service.adopt(r, access_user=r.user, password="wrong-acl-pw"), 400, "DCS.4080"
    )
    assert names_and_ids(service) == before

    iid = service.adopt(r, access_user=r.user, password=r.password)
    inst = show(client, iid)
    assert inst.status == "RUNNING"
    assert inst.access_user == r.user
    assert inst.cache_mode == "single"
    assert r.password not in inst.raw_content.decode()


def test_adopt_unreachable_port_is_refused(service, servers):
    from conftest import free_port

    class Nowhere:
        port = free_port()

    before = names_and_ids(service)
    expect_error(
        lambda: service.adopt(Nowhere(), name=unique("nowhere")),
        400, "DCS.4800", "Invalid private_ip in the request.",
    )
    assert names_and_ids(service) == before


@pytest.mark.parametrize(
    "name",
    [
        "abc", "", "has space", "semi;colon", "dot.name", "x" * 65,
        "-leading-hyphen", "_leading_underscore",
    ],
)
def test_adopt_invalid_name(service, servers, name):
    before = names_and_ids(service)
    expect_error(lambda: service.adopt(servers["plain"], name=name), 400, "DCS.4010")
    assert names_and_ids(service) == before


def test_adopt_description_too_long(service, servers):
    before = names_and_ids(service)
    expect_error(
        lambda: service.adopt(servers["plain"], description="d" * 1025), 400, "DCS.4011"
    )
    assert names_and_ids(service) == before
    # 1024 is still fine.
    iid = service.adopt(servers["plain"], description="d" * 1024)
    assert len(show(service.client(), iid).description) == 1024


# --------------------------------------------------------------------------
# 3. modifying
# --------------------------------------------------------------------------


def weekly_policy(save_days=3, backup_at=(1, 7), begin_at="23:00-00:00", tz="GMT+08:00",
                  backup_type="auto", period_type="weekly"):
    return BackupPolicy(
        backup_type=backup_type,
        save_days=save_days,
        periodical_backup_plan=BackupPlan(
            period_type=period_type, backup_at=list(backup_at), begin_at=begin_at, timezone_offset=tz
        ),
    )


def update(client, iid, **body):
    return client.update_instance(UpdateInstanceRequest(instance_id=iid, body=ModifyInstanceBody(**body)))


def test_update_name_description_and_policy(service, client, servers):
    iid = service.adopt(servers["plain"], name=unique("before"))
    assert show(client, iid).instance_backup_policy is None

    new_name = unique("after")
    resp = update(client, iid, name=new_name, description="new description",
                  instance_backup_policy=weekly_policy())
    assert resp.status_code == 204

    inst = show(client, iid)
    assert inst.name == new_name
    assert inst.description == "new description"
    ibp = inst.instance_backup_policy
    assert ibp is not None
    p = ibp.policy
    assert p.backup_type == "auto"
    assert p.save_days == 3
    plan = p.periodical_backup_plan
    assert plan.period_type == "weekly"
    assert plan.backup_at == [1, 7]
    assert plan.begin_at == "23:00-00:00"
    assert plan.timezone_offset == "GMT+08:00"
    assert ibp.backup_policy_id
    assert ISO_MS.match(ibp.created_at) and ISO_MS.match(ibp.updated_at), ibp
    assert ibp.updated_at >= ibp.created_at

    # The new name is what list and name filters see.
    assert [i.instance_id for i in service.list_all(name=new_name, name_equal="true").instances] == [iid]

    # Changing the policy again keeps its identity and creation time.
    time.sleep(0.01)
    assert update(client, iid, instance_backup_policy=weekly_policy(save_days=7, backup_at=[3])).status_code == 204
    ibp2 = show(client, iid).instance_backup_policy
    assert ibp2.backup_policy_id == ibp.backup_policy_id
    assert ibp2.created_at == ibp.created_at
    assert ibp2.updated_at > ibp.updated_at
    assert (ibp2.policy.save_days, ibp2.policy.periodical_backup_plan.backup_at) == (7, [3])

    # Changing only the description leaves name and policy as they were.
    assert update(client, iid, description="only this").status_code == 204
    inst3 = show(client, iid)
    assert (inst3.name, inst3.description) == (new_name, "only this")
    assert inst3.instance_backup_policy.policy.to_dict() == ibp2.policy.to_dict()


INVALID_POLICIES = [
    ("DCS.4073", dict(backup_type="daily")),
    ("DCS.4072", dict(save_days=0)),
    ("DCS.4072", dict(save_days=8)),
    ("DCS.4074", dict(period_type="daily")),
    ("DCS.4075", dict(backup_at=[])),
    ("DCS.4075", dict(backup_at=[0])),
    ("DCS.4075", dict(backup_at=[8])),
    ("DCS.4075", dict(backup_at=[2, 2])),
    ("DCS.4076", dict(begin_at="23:30-00:30")),
    ("DCS.4076", dict(begin_at="22:00-00:00")),
    ("DCS.4076", dict(begin_at="24:00-01:00")),
    ("DCS.4076", dict(begin_at="later")),
]


def test_invalid_policies_change_nothing(service, client, servers):
    iid = service.adopt(servers["plain"], name=unique("policy"))
    assert update(client, iid, instance_backup_policy=weekly_policy()).status_code == 204
    before = show(client, iid).to_json_object()

    for code, change in INVALID_POLICIES:
        e = expect_error(
            lambda: update(client, iid, name=unique("sneaky"), description="sneaky",
                           instance_backup_policy=weekly_policy(**change)),
            400, code,
        )
        assert e.error_msg, (code, change)
        after = show(client, iid).to_json_object()
        after.pop("status", None), before.pop("status", None)
        assert after == before, f"{change} changed the instance"

    # Invalid name and description are refused on modify as on create.
    expect_error(lambda: update(client, iid, name="ab"), 400, "DCS.4010")
    expect_error(lambda: update(client, iid, description="x" * 1025), 400, "DCS.4011")
    after = show(client, iid).to_json_object()
    after.pop("status", None)
    assert after == before


def test_update_unknown_and_malformed_instance(client):
    expect_error(lambda: update(client, str(uuid.uuid4()), description="x"), 404, "DCS.3022")
    expect_error(lambda: update(client, "not-an-instance", description="x"), 400, "DCS.4061")


# --------------------------------------------------------------------------
# 7. deleting
# --------------------------------------------------------------------------


def test_delete_instance_keeps_its_records(service, client, servers):
    name = unique("doomed")
    iid = service.adopt(servers["plain"], name=name)
    service.seed(iid, backups=12, restores=5, from_="20230601000000", step_ms=1000)
    listed = client.list_backup_records(ListBackupRecordsRequest(instance_id=iid, limit=1000))
    assert listed.total_num == 12

    resp = client.delete_single_instance(DeleteSingleInstanceRequest(instance_id=iid))
    assert resp.status_code == 204

    expect_error(lambda: show(client, iid), 404, "DCS.3022")
    # Another second: the same signed DELETE again would be a replay (401).
    time.sleep(1)
    expect_error(lambda: client.delete_single_instance(DeleteSingleInstanceRequest(instance_id=iid)), 404, "DCS.3022")
    # Its backups can still be listed (and deleted) by its project.
    listed = client.list_backup_records(ListBackupRecordsRequest(instance_id=iid, limit=1000))
    assert listed.total_num == 12
    _, listed_ids = names_and_ids(service)
    assert iid not in {i for i, _ in listed_ids}

    # The records (and so the way to the backup files) are still in the catalog.
    assert service.sql(f"SELECT COUNT(*) FROM backups WHERE instance_id = '{iid}'") == [["12"]]
    assert service.sql(f"SELECT COUNT(*) FROM restores WHERE instance_id = '{iid}'") == [["5"]]

    # The name is free again for a new adoption, a new instance.
    iid2 = service.adopt(servers["plain"], name=name)
    assert iid2 != iid
    assert show(client, iid2).name == name
    assert client.list_backup_records(ListBackupRecordsRequest(instance_id=iid2)).total_num == 0


def test_delete_unknown_and_malformed_instance(client):
    expect_error(lambda: client.delete_single_instance(DeleteSingleInstanceRequest(instance_id=str(uuid.uuid4()))),
                 404, "DCS.3022")
    expect_error(lambda: client.delete_single_instance(DeleteSingleInstanceRequest(instance_id="12345")),
                 400, "DCS.4061")


# --------------------------------------------------------------------------
# more of the adoption and listing contract
# --------------------------------------------------------------------------


def test_adopt_by_host_name(service, client, servers):
    iid = service.adopt(servers["plain"], private_ip="localhost")
    inst = show(client, iid)
    assert inst.status == "RUNNING"
    assert inst.ip == "localhost"
    assert inst.port == servers["plain"].port


def test_adopt_with_a_backup_policy(service, client, servers):
    iid = service.adopt(servers["plain"], instance_backup_policy=weekly_policy(save_days=5, backup_at=[2, 4]))
    ibp = show(client, iid).instance_backup_policy
    assert ibp is not None and ibp.backup_policy_id
    assert (ibp.policy.backup_type, ibp.policy.save_days) == ("auto", 5)
    assert ibp.policy.periodical_backup_plan.backup_at == [2, 4]
    assert ibp.policy.periodical_backup_plan.begin_at == "23:00-00:00"

    before = names_and_ids(service)
    expect_error(
        lambda: service.adopt(servers["plain"], instance_backup_policy=weekly_policy(save_days=9)),
        400, "DCS.4072",
    )
    expect_error(
        lambda: service.adopt(servers["plain"], instance_backup_policy=weekly_policy(backup_at=[9])),
        400, "DCS.4075",
    )
    assert names_and_ids(service) == before


def test_adopt_unsupported_engine(service, servers):
    before = names_and_ids(service)
    expect_error(lambda: service.adopt(servers["plain"], engine="Memcached"), 400, "DCS.4006")
    assert names_and_ids(service) == before


def test_rename_to_a_taken_name_is_refused(service, client, servers):
    taken = unique("taken")
    service.adopt(servers["plain"], name=taken)
    iid = service.adopt(servers["plain"], name=unique("mine"))
    expect_error(lambda: update(client, iid, name=taken), 400, "DCS.4060")
    assert show(client, iid).name != taken
    # Renaming to its own current name is not a conflict.
    assert update(client, iid, name=show(client, iid).name).status_code == 204


def test_list_instances_pages_and_counts_all(service, servers):
    everything = service.list_all()
    n = everything.instance_num
    assert n == len(everything.instances) >= 3
    from huaweicloudsdkdcs.v2 import ListInstancesRequest

    seen = []
    for offset in range(0, n + 2, 2):
        page = service.client().list_instances(ListInstancesRequest(offset=offset, limit=2))
        assert page.instance_num == n
        seen += [i.instance_id for i in page.instances]
    assert seen == [i.instance_id for i in everything.instances]
    assert len(set(seen)) == n


def test_status_is_error_when_the_server_is_down(service, client, redis_factory):
    r = redis_factory.start(redis_factory.plain())
    iid = service.adopt(r)
    r.proc.kill()
    r.proc.wait()
    inst = show(client, iid)
    assert inst.status == "ERROR"
    listed = [i for i in service.list_all().instances if i.instance_id == iid]
    assert [i.status for i in listed] == ["ERROR"]
    # Deleting it so later listings don't keep probing a dead server.
    client.delete_single_instance(DeleteSingleInstanceRequest(instance_id=iid))
