"""The shipped Prometheus alert rules are valid (`promtool check rules`)
and behave as documented (`promtool test rules`: each alert fires when it
should and stays quiet otherwise). promtool comes from Debian's
`prometheus` package, which scripts/test installs."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES_DIR = os.path.join(ROOT, "dist", "prometheus")
RULES = os.path.join(RULES_DIR, "dcs-backup.rules.yml")
RULE_TESTS = os.path.join(RULES_DIR, "dcs-backup.rules.test.yml")


def promtool():
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("promtool is missing under CI: install Debian's prometheus package (scripts/test does)")
    pytest.skip("promtool is not installed (Debian package prometheus); scripts/test installs it")


def run(*args):
    r = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=RULES_DIR)
    return r.returncode, r.stdout + r.stderr


def test_the_rules_file_is_valid():
    code, out = run("check", "rules", RULES)
    assert code == 0, out
    assert "SUCCESS: 5 rules found" in out, out


def test_each_alert_fires_and_stays_quiet_as_its_unit_tests_say():
    code, out = run("test", "rules", RULE_TESTS)
    assert code == 0, out
    assert "SUCCESS" in out, out
    # Every alert of the rules file has a test.
    with open(RULES) as f:
        alerts = [line.split(":", 1)[1].strip() for line in f if line.strip().startswith("- alert:")]
    with open(RULE_TESTS) as f:
        tested = f.read()
    assert alerts, "no alert in the rules file"
    for a in alerts:
        assert f"alertname: {a}" in tested, f"{a} has no promtool unit test"
