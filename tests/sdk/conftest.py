"""Fixtures for the official-SDK end-to-end suite.

Everything here runs the real thing: the `dcs-backup` binary
($DCS_BACKUP_BIN), real `redis-server` processes and the official Huawei
Cloud Python SDK. The catalog is SQLite or PostgreSQL depending on
$DCS_TEST_DATABASE (`sqlite` | `postgres`); with PostgreSQL every service
gets a fresh database on $DCS_TEST_PG_URL, dropped at teardown.
"""

import contextlib
import functools
import datetime
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkdcs.v2 import (
    CreateInstanceBody,
    CreateInstanceRequest,
    DcsClient,
    ListInstancesRequest,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DCS_BACKUP_BIN") or os.path.join(ROOT, "target", "debug", "dcs-backup")
DATABASE = os.environ.get("DCS_TEST_DATABASE", "sqlite")
PG_URL = os.environ.get("DCS_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS_SERVER = shutil.which("redis-server") or "redis-server"
REDIS_CLI = shutil.which("redis-cli") or "redis-cli"

assert DATABASE in ("sqlite", "postgres"), f"DCS_TEST_DATABASE={DATABASE!r}"

SDK_DATE = "%Y%m%dT%H%M%SZ"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix):
    """A valid, unique DCS instance name (4-64 of [A-Za-z0-9_-])."""
    return f"{prefix}-{secrets.token_hex(4)}"


def wait_until(what, predicate, timeout=20.0, interval=0.02, on_fail=None):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            extra = on_fail() if on_fail else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{extra}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# PostgreSQL databases
# --------------------------------------------------------------------------


def psql(url, sql):
    r = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        raise RuntimeError(f"psql {sql!r} failed: {r.stderr}")
    return r.stdout


def pg_url_for(dbname):
    u = urllib.parse.urlsplit(PG_URL)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, u.fragment))


# --------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------


class Service:
    """One `dcs-backup serve` process with its own data dir and catalog."""

    def __init__(self, workdir):
        self.data_dir = os.path.join(workdir, "data")
        os.makedirs(self.data_dir)
        self.log_path = os.path.join(workdir, "service.log")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.pg_db = None
        if DATABASE == "postgres":
            self.pg_db = "dcs_sdk_" + secrets.token_hex(6)
            psql(PG_URL, f"CREATE DATABASE {self.pg_db}")
            self.database_url = pg_url_for(self.pg_db)
        else:
            self.database_url = f"sqlite://{self.data_dir}/catalog.db"
        self.proc = None
        self.creds = None
        self.env = {}
        self.storage = None
        self.owner = True

    def replica(self, workdir):
        """A second `serve` process on the same catalog and store (its own
        data dir, so its own node id; the first's password key)."""
        r = Service.__new__(Service)
        r.__dict__.update(self.__dict__)
        r.data_dir = os.path.join(workdir, "data")
        os.makedirs(r.data_dir)
        shutil.copy(os.path.join(self.data_dir, "secret.key"), r.data_dir)
        shutil.copy(os.path.join(self.data_dir, "credentials.json"), r.data_dir)
        r.log_path = os.path.join(workdir, "service.log")
        r.port = free_port()
        r.endpoint = f"http://127.0.0.1:{r.port}"
        r.storage = self.storage or f"fs://{os.path.join(self.data_dir, 'backups')}"
        r.env = dict(self.env)
        r.proc = None
        r.owner = False  # the first one drops the database
        return r

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        cmd = [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
        if self.pg_db or not self.owner:
            cmd += ["--database-url", self.database_url]
        if self.storage:
            cmd += ["--storage", self.storage]
        self._log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.update(self.env)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        creds_file = os.path.join(self.data_dir, "credentials.json")

        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"dcs-backup exited with {self.proc.returncode} at start-up\n{self.log()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as r:
                    return r.status == 200 and os.path.exists(creds_file)
            except OSError:
                return False

        wait_until("dcs-backup /health", ready, timeout=30, on_fail=self.log)
        with open(creds_file) as f:
            self.creds = json.load(f)
        assert set(self.creds) >= {"project_id", "ak", "sk"}, self.creds
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return "---- service log ----\n" + f.read()[-20000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        died = None
        if self.proc is not None:
            if self.proc.poll() is not None:
                died = self.proc.returncode
            else:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._log.close()
        if self.pg_db and self.owner:
            psql(PG_URL, f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)")
        if died is not None:
            pytest.fail(f"dcs-backup died during the tests (exit {died})\n{self.log()}")

    def assert_alive(self):
        assert self.proc.poll() is None, f"dcs-backup died (exit {self.proc.returncode})\n{self.log()}"

    # -- clients -----------------------------------------------------------

    @property
    def project_id(self):
        return self.creds["project_id"]

    def client(self, ak=None, sk=None, project_id=None):
        cred = BasicCredentials(
            ak or self.creds["ak"], sk or self.creds["sk"], project_id or self.creds["project_id"]
        )
        return DcsClient.new_builder().with_credentials(cred).with_endpoint(self.endpoint).build()

    def signed(self, method, path, query=None, body=b"", ak=None, sk=None, date=None, headers=None):
        """A raw request signed by the SDK's own signer (for what the SDK
        hides: raw bodies, dates in the past). `date` is a UTC datetime."""
        hp = {"Content-Type": "application/json"}
        if date is not None:
            hp["X-Sdk-Date"] = date.strftime(SDK_DATE)
        hp.update(headers or {})
        req = SdkRequest(
            method=method,
            schema="http",
            host=f"127.0.0.1:{self.port}",
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=hp,
            body=body,
        )
        Signer(BasicCredentials(ak or self.creds["ak"], sk or self.creds["sk"])).sign(req)
        return requests.request(
            method, f"{self.endpoint}{req.uri}", headers=req.header_params, data=req.body, timeout=10
        )

    # -- command-line tools against the same catalog ------------------------

    def run(self, *args):
        r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError(f"dcs-backup {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
        return r.stdout

    def seed(self, instance_id, backups=0, restores=0, from_="20240101000000", step_ms=1000):
        out = self.run(
            "dev", "seed", "--database-url", self.database_url, "--data-dir", self.data_dir,
            "--instance-id", instance_id,
            "--backups", str(backups), "--restores", str(restores),
            "--from", from_, "--step-ms", str(step_ms),
        )
        return json.loads(out.strip().splitlines()[-1])

    def credential_create(self, project_id):
        out = self.run("credential", "create", "--project-id", project_id, "--database-url", self.database_url)
        return json.loads(out)

    def sql(self, query):
        """Runs a query on the catalog; returns rows as lists of strings."""
        if self.pg_db:
            out = psql(self.database_url, query)
            return [line.split("|") for line in out.splitlines() if line]
        # Python's own sqlite3 module: the sqlite3 CLI is not installed by
        # scripts/test. Read-only, so the service's writes are not disturbed.
        db = self.database_url[len("sqlite://"):]
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
            return [["" if v is None else str(v) for v in row] for row in conn.execute(query)]

    # -- SDK shortcuts -------------------------------------------------------

    def adopt(self, redis, name=None, client=None, private_ip="127.0.0.1", **extra):
        """Adopts `redis` through the SDK; returns the instance id."""
        fields = dict(
            name=unique("inst") if name is None else name,
            engine="Redis",
            capacity=1,
            spec_code="redis.single.xu1.tiny.128",
            az_codes=["az1"],
            vpc_id=str(uuid.uuid4()),
            subnet_id=str(uuid.uuid4()),
            private_ip=private_ip,
            port=redis.port,
        )
        fields.update(extra)
        body = CreateInstanceBody(**fields)
        resp = (client or self.client()).create_instance(CreateInstanceRequest(body=body))
        assert resp.status_code == 200, resp
        assert len(resp.instances) == 1, resp
        return resp.instances[0].instance_id

    def list_all(self, client=None, **kw):
        return (client or self.client()).list_instances(ListInstancesRequest(limit=1000, **kw))


def sdk_error(excinfo_or_exc):
    e = getattr(excinfo_or_exc, "value", excinfo_or_exc)
    assert isinstance(e, ClientRequestException), repr(e)
    return e


def start_service(workdir):
    svc = Service(workdir)
    try:
        return svc.start()
    except BaseException:
        svc.stop()
        raise


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A running service shared by one test module."""
    svc = Service(str(tmp_path_factory.mktemp("svc")))
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def client(service):
    return service.client()


# --------------------------------------------------------------------------
# Redis servers
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def server_version(binary):
    """(major, minor) of a redis-server/valkey-server binary."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    v = out.split("v=", 1)[1].split()[0]
    return tuple(int(x) for x in v.split(".")[:2])


class RedisServer:
    def __init__(self, workdir, args=(), password=None, user=None, binary=None):
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=workdir)
        self.binary = binary or REDIS_SERVER
        # 6.2 has DEBUG on and no switch for it.
        self.debug_flag = server_version(self.binary) >= (7, 0)
        self.args = list(args)
        self.password = password
        self.user = user
        self.proc = None
        self.port = None

    def spawn(self):
        self.port = free_port()
        while self.port == 6379:
            self.port = free_port()
        cmd = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
            "--save", "", "--appendonly", "no",
            *(["--enable-debug-command", "yes"] if self.debug_flag else []),
            "--logfile", os.path.join(self.dir, "redis.log"), *self.args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        return self

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log")) as f:
                return f.read()[-5000:]
        except OSError:
            return ""

    def cli(self, *args, check=True):
        cmd = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning"]
        if self.user:
            cmd += ["--user", self.user]
        if self.password:
            cmd += ["--pass", self.password]
        r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=10)
        if check and r.returncode != 0:
            raise RuntimeError(f"redis-cli {args} failed: {r.stderr}")
        return r.stdout.strip()

    def info(self, section=""):
        out = self.cli("INFO", *([section] if section else []))
        return dict(
            line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith("#")
        )

    def wait_ready(self):
        for attempt in range(5):
            def up():
                if self.proc.poll() is not None:
                    return True
                return self.cli("PING", check=False) == "PONG"

            wait_until(f"redis-server on {self.port}", up, timeout=10, on_fail=self.log)
            if self.proc.poll() is None:
                return self
            # Most likely the port was taken between choosing and binding it.
            if attempt == 4:
                pytest.fail(f"redis-server would not start\n{self.log()}")
            self.spawn()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisFactory:
    """Starts redis servers; `start_many` spawns them all before waiting."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.servers = []

    def new(self, args=(), password=None, user=None, binary=None):
        s = RedisServer(self.workdir, args, password, user, binary)
        self.servers.append(s)
        return s

    def plain(self):
        return self.new()

    def with_password(self, password="s3cret-pw"):
        return self.new(["--requirepass", password], password=password)

    def with_acl_user(self, user="backup", password="acl-pw-1"):
        # The default user is switched off: only the named user can log in.
        return self.new(
            ["--user", "default", "off", "--user", user, "on", f">{password}", "~*", "&*", "+@all"],
            password=password,
            user=user,
        )

    def start(self, *servers):
        for s in servers:
            s.spawn()
        for s in servers:
            s.wait_ready()
        return servers[0] if len(servers) == 1 else servers

    def start_pair(self):
        """A master and one replica, waited on until the link is up."""
        # No 5 s wait for more replicas before the first full sync.
        master = self.start(self.new(["--repl-diskless-sync-delay", "0"]))
        replica = self.new()
        replica.args = ["--replicaof", "127.0.0.1", str(master.port)]
        self.start(replica)
        wait_until(
            "replication link up",
            lambda: replica.info("replication").get("master_link_status") == "up"
            and "state=online" in master.info("replication").get("slave0", ""),
            timeout=20,
            on_fail=lambda: master.log() + replica.log(),
        )
        return master, replica

    def stop_all(self):
        for s in self.servers:
            s.stop()


@pytest.fixture(scope="module")
def redis_factory(tmp_path_factory):
    f = RedisFactory(str(tmp_path_factory.mktemp("redis")))
    yield f
    f.stop_all()


@pytest.fixture(scope="module")
def redis(redis_factory):
    """A plain standalone redis-server."""
    return redis_factory.start(redis_factory.plain())


@pytest.fixture(scope="module")
def redis_password(redis_factory):
    return redis_factory.start(redis_factory.with_password())


@pytest.fixture(scope="module")
def redis_acl(redis_factory):
    return redis_factory.start(redis_factory.with_acl_user())


@pytest.fixture(scope="module")
def redis_pair(redis_factory):
    return redis_factory.start_pair()


def utc(y, mo, d, h=0, mi=0, s=0):
    return datetime.datetime(y, mo, d, h, mi, s, tzinfo=datetime.timezone.utc)
