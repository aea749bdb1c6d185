"""Authentication and project isolation, through the SDK and through raw
requests signed with the SDK's own signer."""

import datetime
import json
import re
import uuid

import pytest
import requests
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    DeleteSingleInstanceRequest,
    ListBackupRecordsRequest,
    ListInstancesRequest,
    ListRestoreRecordsRequest,
    ModifyInstanceBody,
    ShowInstanceRequest,
    UpdateInstanceRequest,
)

from conftest import sdk_error

OTHER_PROJECT = "other123"


@pytest.fixture(scope="module")
def world(service, redis):
    """Project A (the first credential) and project B (`other123`), each
    with one instance of its own, plus seeded records on A's."""
    a_iid = service.adopt(redis, name="project-a-inst")
    service.seed(a_iid, backups=5, restores=3, from_="20240301000000")
    b = service.credential_create(OTHER_PROJECT)
    assert b["project_id"] == OTHER_PROJECT and b["ak"] and b["sk"]
    assert b["ak"] != service.creds["ak"]
    b_client = service.client(b["ak"], b["sk"], OTHER_PROJECT)
    b_iid = service.adopt(redis, name="project-b-inst", client=b_client)
    return {"a_iid": a_iid, "b": b, "b_client": b_client, "b_iid": b_iid}


def assert_401_json(resp):
    assert resp.status_code == 401, (resp.status_code, resp.text)
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert re.fullmatch(r"DCS\.\d{4}", body.get("error_code", "")), body
    assert isinstance(body.get("error_msg"), str) and body["error_msg"], body
    return body


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------
# signatures
# --------------------------------------------------------------------------


def test_wrong_sk_is_401_with_a_json_error(service, world):
    bad = service.client(sk=service.creds["sk"][:-1] + ("A" if service.creds["sk"][-1] != "A" else "B"))
    with pytest.raises(ClientRequestException) as ei:
        bad.list_instances(ListInstancesRequest())
    e = sdk_error(ei)
    assert e.status_code == 401
    # The SDK puts the body's error_code here; without a JSON body it would be "401".
    assert re.fullmatch(r"DCS\.\d{4}", e.error_code), str(e)
    assert e.error_msg

    with pytest.raises(ClientRequestException) as ei:
        bad.show_instance(ShowInstanceRequest(instance_id=world["a_iid"]))
    assert sdk_error(ei).status_code == 401

    path = f"/v2/{service.project_id}/instances"
    wrong_sk = assert_401_json(service.signed("GET", path, sk="definitely-not-the-sk"))
    unknown_ak = assert_401_json(service.signed("GET", path, ak="NOSUCHAK0000000000", sk="whatever"))
    # Whether the AK exists is not revealed.
    assert wrong_sk == unknown_ak


def test_unsigned_and_garbled_requests_are_401_json(service):
    url = f"{service.endpoint}/v2/{service.project_id}/instances"
    assert_401_json(requests.get(url, timeout=10))
    for auth in ("Basic dXNlcjpwYXNz", "SDK-HMAC-SHA256", "SDK-HMAC-SHA256 Access=x, SignedHeaders=, Signature=",
                 "SDK-HMAC-SHA256 Access=" + "A" * 5000 + ", SignedHeaders=host;x-sdk-date, Signature=00"):
        headers = {"Authorization": auth, "X-Sdk-Date": now().strftime("%Y%m%dT%H%M%SZ")}
        assert_401_json(requests.get(url, headers=headers, timeout=10))


def test_tampered_request_is_401(service, world):
    path = f"/v2/{service.project_id}/instances/{world['a_iid']}/backups"
    ok = service.signed("GET", path, {"limit": "2"})
    assert ok.status_code == 200
    # Replay the same signed headers with another query string.
    url = f"{service.endpoint}{path}?limit=3"
    assert_401_json(requests.get(url, headers=ok.request.headers, timeout=10))
    # ... or another body.
    put_path = f"/v2/{service.project_id}/instances/{world['a_iid']}"
    signed = service.signed("PUT", put_path, body=json.dumps({"description": "signed"}).encode())
    assert signed.status_code == 204
    headers = dict(signed.request.headers)
    headers.pop("Content-Length", None)
    tampered = requests.put(f"{service.endpoint}{put_path}", headers=headers,
                            data=json.dumps({"description": "tampered"}).encode(), timeout=10)
    assert_401_json(tampered)
    inst = service.client().show_instance(ShowInstanceRequest(instance_id=world["a_iid"]))
    assert inst.description == "signed"


def test_a_replayed_signed_request_is_refused(service, world):
    # The SDK's signature covers method, path, query, body and the date to
    # the second: the same signed bytes sent again are refused, once used.
    put_path = f"/v2/{service.project_id}/instances/{world['a_iid']}"
    body = json.dumps({"description": "once"}).encode()
    first = service.signed("PUT", put_path, body=body)
    assert first.status_code == 204, first.text
    replay = requests.put(f"{service.endpoint}{put_path}", headers=dict(first.request.headers),
                          data=body, timeout=10)
    refused = assert_401_json(replay)
    assert (refused["error_code"], refused["error_msg"]) == ("DCS.1001", "Request already used.")
    # A read changes nothing and may be sent again.
    read = service.signed("GET", put_path)
    assert read.status_code == 200
    again = requests.get(f"{service.endpoint}{put_path}", headers=dict(read.request.headers), timeout=10)
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("minutes,status", [(-20, 401), (20, 401), (-10, 200), (10, 200), (0, 200)])
def test_sdk_date_window(service, minutes, status):
    date = now() + datetime.timedelta(minutes=minutes)
    resp = service.signed("GET", f"/v2/{service.project_id}/instances", date=date)
    if status == 401:
        body = assert_401_json(resp)
        assert body["error_code"] in ("DCS.1001", "DCS.1002"), body
    else:
        assert resp.status_code == 200, resp.text


# --------------------------------------------------------------------------
# project isolation
# --------------------------------------------------------------------------


def answers(service, world, ak, sk, project, iid):
    """Raw answers to every instance-scoped call for `iid` in `project`'s
    path, signed with ak/sk."""
    base = f"/v2/{project}/instances/{iid}"
    calls = [
        ("GET", base, None, b""),
        ("GET", base + "/backups", {"limit": "10"}, b""),
        ("GET", base + "/restores", None, b""),
        ("PUT", base, None, json.dumps({"description": "hijacked"}).encode()),
        ("DELETE", base, None, b""),
        ("GET", f"/v2/{project}/instances", {"instance_id": iid}, b""),
    ]
    out = []
    for method, path, query, body in calls:
        r = service.signed(method, path, query, body, ak=ak, sk=sk)
        out.append((method, path.replace(iid, "{id}"), r.status_code,
                    r.headers.get("content-type"), r.content))
    return out


def test_other_project_asking_in_the_first_projects_path_is_refused(service, world):
    b = world["b"]
    existing = answers(service, world, b["ak"], b["sk"], service.project_id, world["a_iid"])
    missing = answers(service, world, b["ak"], b["sk"], service.project_id, str(uuid.uuid4()))
    for method, path, status, ctype, content in existing:
        assert status in (401, 403, 404), (method, path, status, content)
        assert json.loads(content)["error_code"], content
    # Nothing tells an existing instance from a missing one.
    assert existing == missing

    # And through the SDK: B's credential with A's project id.
    sneaky = service.client(b["ak"], b["sk"], service.project_id)
    with pytest.raises(ClientRequestException) as ei:
        sneaky.show_instance(ShowInstanceRequest(instance_id=world["a_iid"]))
    assert sdk_error(ei).status_code in (401, 403, 404)
    with pytest.raises(ClientRequestException):
        sneaky.list_instances(ListInstancesRequest())
    with pytest.raises(ClientRequestException):
        sneaky.delete_single_instance(DeleteSingleInstanceRequest(instance_id=world["a_iid"]))

    # A's instance is untouched.
    inst = service.client().show_instance(ShowInstanceRequest(instance_id=world["a_iid"]))
    assert inst.name == "project-a-inst"
    assert inst.description != "hijacked"


def test_other_project_asking_in_its_own_path_sees_nothing(service, world):
    b = world["b"]
    existing = answers(service, world, b["ak"], b["sk"], OTHER_PROJECT, world["a_iid"])
    missing = answers(service, world, b["ak"], b["sk"], OTHER_PROJECT, str(uuid.uuid4()))
    assert existing == missing
    by_call = {(m, p): (s, c) for m, p, s, _, c in existing}
    for key in [(m, p) for m, p, *_ in existing if not p.endswith("/instances")]:
        status, content = by_call[key]
        assert status == 404, (key, status, content)
        assert json.loads(content)["error_code"] == "DCS.3022", (key, content)
    status, content = by_call[("GET", f"/v2/{OTHER_PROJECT}/instances")]
    assert status == 200 and json.loads(content)["instance_num"] == 0, content

    bc = world["b_client"]
    for call in (
        lambda: bc.show_instance(ShowInstanceRequest(instance_id=world["a_iid"])),
        lambda: bc.list_backup_records(ListBackupRecordsRequest(instance_id=world["a_iid"])),
        lambda: bc.list_restore_records(ListRestoreRecordsRequest(instance_id=world["a_iid"])),
        lambda: bc.update_instance(UpdateInstanceRequest(
            instance_id=world["a_iid"], body=ModifyInstanceBody(name="stolen-name"))),
        lambda: bc.delete_single_instance(DeleteSingleInstanceRequest(instance_id=world["a_iid"])),
    ):
        with pytest.raises(ClientRequestException) as ei:
            call()
        e = sdk_error(ei)
        assert (e.status_code, e.error_code) == (404, "DCS.3022"), str(e)

    a = service.client()
    inst = a.show_instance(ShowInstanceRequest(instance_id=world["a_iid"]))
    assert inst.name == "project-a-inst"
    assert a.list_backup_records(ListBackupRecordsRequest(instance_id=world["a_iid"])).total_num == 5


def test_each_project_lists_only_its_own_instances(service, world):
    a_list = service.list_all()
    b_list = service.list_all(client=world["b_client"])
    a_ids = {i.instance_id for i in a_list.instances}
    b_ids = {i.instance_id for i in b_list.instances}
    assert world["a_iid"] in a_ids and world["b_iid"] not in a_ids
    assert b_ids == {world["b_iid"]}
    assert b_list.instance_num == 1
    assert a_list.instance_num == len(a_ids)
    # Filters do not leak across projects either.
    assert service.list_all(client=world["b_client"], name="project-a-inst").instance_num == 0
    assert service.list_all(client=world["b_client"], instance_id=world["a_iid"]).instance_num == 0
    # B's own instance is fully usable by B, invisible to A.
    assert world["b_client"].show_instance(ShowInstanceRequest(instance_id=world["b_iid"])).name == "project-b-inst"
    with pytest.raises(ClientRequestException) as ei:
        service.client().show_instance(ShowInstanceRequest(instance_id=world["b_iid"]))
    assert (sdk_error(ei).status_code, sdk_error(ei).error_code) == (404, "DCS.3022")


def test_names_are_unique_per_project_not_globally(service, world, redis):
    # Names are unique per project: B may use A's instance name.
    iid = service.adopt(redis, name="project-a-inst", client=world["b_client"])
    assert world["b_client"].show_instance(ShowInstanceRequest(instance_id=iid)).name == "project-a-inst"
    world["b_client"].delete_single_instance(DeleteSingleInstanceRequest(instance_id=iid))


def test_whether_another_project_exists_is_not_revealed(service, world):
    a_on_b = service.signed("GET", f"/v2/{OTHER_PROJECT}/instances")
    a_on_none = service.signed("GET", "/v2/no-such-project-0000/instances")
    assert_401_json(a_on_b)
    assert (a_on_b.status_code, a_on_b.content) == (a_on_none.status_code, a_on_none.content)
    base_b = f"/v2/{OTHER_PROJECT}/instances/{world['b_iid']}"
    base_none = f"/v2/no-such-project-0000/instances/{world['b_iid']}"
    for suffix in ("", "/backups", "/restores"):
        x, y = service.signed("GET", base_b + suffix), service.signed("GET", base_none + suffix)
        assert (x.status_code, x.content) == (y.status_code, y.content)
        assert x.status_code == 401


def test_credentials_file_is_private_and_the_secret_not_logged(service, world):
    import os
    import stat

    path = os.path.join(service.data_dir, "credentials.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    log = service.log()
    assert "credentials.json" in log
    assert service.creds["sk"] not in log
    assert world["b"]["sk"] not in log


def test_health_and_openapi_need_no_signature(service):
    r = requests.get(service.endpoint + "/health", timeout=10)
    assert r.status_code == 200
    r = requests.get(service.endpoint + "/openapi.json", timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v2/{project_id}/instances", "/v2/{project_id}/instances/{instance_id}",
                 "/v2/{project_id}/instances/{instance_id}/backups",
                 "/v2/{project_id}/instances/{instance_id}/restores"):
        assert path in doc["paths"], sorted(doc["paths"])
