"""The systemd unit in dist/: valid for systemd, hardened, and its command
line starts the real service."""

import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import BIN, ROOT, free_port, wait_until

UNIT = os.path.join(ROOT, "dist", "dcs-backup.service")
SYSUSERS = os.path.join(ROOT, "dist", "dcs-backup.sysusers")
INSTALLED_BIN = "/usr/local/bin/dcs-backup"


def need_systemd_analyze():
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing under CI")
        pytest.skip("systemd-analyze is not installed")
    return exe


def unit_for_this_build(tmp_path):
    """The unit as shipped, with ExecStart pointing at the binary under
    test (verify checks that the command exists)."""
    text = open(UNIT).read()
    assert INSTALLED_BIN in text
    path = tmp_path / "dcs-backup.service"
    path.write_text(text.replace(INSTALLED_BIN, os.path.abspath(BIN)))
    return path


def directives(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def test_systemd_verify_accepts_the_unit_without_a_warning(tmp_path):
    exe = need_systemd_analyze()
    unit = unit_for_this_build(tmp_path)
    r = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and unparsable values but says so:
    # any output is a mistake in the unit.
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "" and r.stdout.strip() == "", r.stderr + r.stdout


def test_the_unit_is_hardened(tmp_path):
    exe = need_systemd_analyze()
    d = directives(open(UNIT).read())
    assert d["User"] == ["dcs-backup"] and d["StateDirectory"] == ["dcs-backup"]
    for key, value in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("UMask", "0077"),
        ("CapabilityBoundingSet", ""),
    ]:
        assert d.get(key) == [value], (key, d.get(key))
    # systemd's own score of the unit: 0 (locked down) to 10 (exposed).
    unit = unit_for_this_build(tmp_path)
    r = subprocess.run(
        [exe, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


def test_the_sysusers_file_creates_a_system_user_without_a_shell():
    fields = [l.split() for l in open(SYSUSERS) if l.strip() and not l.startswith("#")]
    assert len(fields) == 1
    kind, name = fields[0][:2]
    assert (kind, name) == ("u", "dcs-backup")
    assert fields[0][-1] == "/usr/sbin/nologin"


def test_the_units_command_line_starts_the_service(tmp_path):
    """What ExecStart and Environment= say, run as written (with the state
    directory moved to a temporary one): the service comes up and puts its
    files in the state directory, owner-only."""
    d = directives(open(UNIT).read())
    env = dict(os.environ)
    for assignment in d.get("Environment", []):
        k, _, v = assignment.partition("=")
        env[k] = v
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    assert env["DCS_BACKUP_DATA_DIR"] == "/var/lib/dcs-backup"
    env["DCS_BACKUP_DATA_DIR"] = str(state)
    port = free_port()
    env["DCS_BACKUP_LISTEN"] = f"127.0.0.1:{port}"
    (exec_start,) = d["ExecStart"]
    argv = exec_start.split()
    assert argv[0] == INSTALLED_BIN
    argv[0] = BIN
    log = open(tmp_path / "journal", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=state)
    try:
        def up():
            assert proc.poll() is None, open(tmp_path / "journal").read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until("the unit's service", up, timeout=30)
        creds = state / "credentials.json"
        wait_until("credentials.json", creds.exists, timeout=10)
        assert creds.stat().st_mode & 0o077 == 0
        assert (state / "catalog.db").exists()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, "the service did not stop cleanly on SIGTERM (KillSignal)"
        log.close()
    journal = open(tmp_path / "journal", "rb").read()
    # Not a terminal: no colour codes in what the journal receives.
    assert b"\x1b[" not in journal, journal[:500]
