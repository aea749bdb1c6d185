"""The web console in a real browser (Debian's headless Chromium through
Selenium), against the real service and real redis-servers.

A person's story: sign in with the project's keys, see the adopted
instances, click "Back up now" and watch the record reach `succeed`, set a
backup policy (and read the API's refusal in words), restore the backup
into another instance after reading its dry-run plan and typing the
target's name, and find the data in the target. A wrong secret key shows
an error on the sign-in page. The page's own SHA-256/HMAC and its
WebCrypto path sign exactly like the server (`dcs-backup dev sign`),
also over plain HTTP from a host that is not localhost, where browsers
withhold WebCrypto. No page makes a request anywhere but the service, and
the browser console stays free of errors.

With DCS_CONSOLE_SCREENSHOTS=DIR the main pages are saved there as PNGs
at 1366×768 (docs/console/ in the repository holds them).
"""

import datetime
import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import time

import pytest

from conftest import BIN, unique, wait_until

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = os.environ.get("DCS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DCS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = os.environ.get("DCS_CONSOLE_SCREENSHOTS")
# A name that is not localhost: pages loaded from it are not a secure
# context, so WebCrypto is withheld and the console signs with its own code.
INSECURE_HOST = "console.test"


# --------------------------------------------------------------------------
# the browser
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are needed (scripts/test installs them)")
        pytest.skip("chromium or chromedriver not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1366,768",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
        f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # The driver's path is given, so Selenium Manager never downloads one.
    svc = DriverService(executable_path=CHROMEDRIVER, log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(service=svc, options=opts)
    # The page's viewport itself is 1366×768, whatever the window adds.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": False},
    )
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name):
    if not SHOTS:
        return
    os.makedirs(SHOTS, exist_ok=True)
    # The page from its top (Selenium scrolls to what it clicks), without
    # the passing notice; then let focus rings settle.
    driver.execute_script(
        "window.scrollTo(0, 0); const t = document.querySelector('#toast'); if (t) t.hidden = true;"
    )
    time.sleep(0.3)
    assert driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def wait(driver, what, predicate, timeout=30):
    def check(d):
        try:
            return predicate(d)
        except (StaleElementReferenceException, WebDriverException):
            return False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except Exception:
        body = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"timed out waiting for {what}; the page says:\n{body}")


def visible(driver, css):
    els = driver.find_elements(By.CSS_SELECTOR, css)
    return els[0] if els and els[0].is_displayed() else None


def page_requests(driver):
    """URLs the pages asked for since the last call, from the DevTools log."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def assert_clean(driver, origins, allowed_statuses=()):
    """No request left the service's origins; no error in the console
    except the API's own refusals a test provoked on purpose."""
    for url in page_requests(driver):
        if url.startswith("data:"):
            # Not a request: Chromium's own icons (the date picker's).
            continue
        assert any(url.startswith(o + "/") for o in origins), f"request to {url}"
    errors = []
    for e in driver.get_log("browser"):
        if e["level"] != "SEVERE":
            continue
        provoked = ("/v2/" in e["message"] or "/v3/" in e["message"]) and any(
            f"status of {s}" in e["message"] for s in allowed_statuses
        )
        if not provoked:
            errors.append(e["message"])
    assert not errors, errors


def sign_in(driver, base, creds, sk=None):
    driver.get(base + "/console/")
    wait(driver, "the sign-in form", lambda d: visible(d, "#signin-form"))
    for css, value in (
        ("#signin-project", creds["project_id"]),
        ("#signin-ak", creds["ak"]),
        ("#signin-sk", sk if sk is not None else creds["sk"]),
    ):
        el = driver.find_element(By.CSS_SELECTOR, css)
        el.clear()
        el.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#signin-submit").click()


def click(driver, css):
    el = wait(driver, css, lambda d: visible(d, css))
    wait(driver, f"{css} enabled", lambda d: el.is_enabled())
    el.click()
    return el


def record_status(driver, table, attr, rec_id):
    row = driver.find_elements(By.CSS_SELECTOR, f"#{table} tr[{attr}='{rec_id}'] .status")
    return row[0].get_attribute("data-status") if row else None


# --------------------------------------------------------------------------
# the instances
# --------------------------------------------------------------------------


def populate(redis):
    """Strings in db 0 (about 700 KiB of RDB), a hash, a list and a set,
    and keys in db 1."""
    redis.cli("DEBUG", "POPULATE", "3000", "order", "64")
    redis.cli("DEBUG", "POPULATE", "20000", "item", "512")
    redis.cli("HSET", "customer:1", "name", "Ada", "city", "Zürich")
    redis.cli("RPUSH", "queue:mail", "a", "b", "c")
    redis.cli("SADD", "tags", "new", "sale")
    redis.cli("SET", "session:x", "1", "EX", "86400")
    redis.cli("-n", "1", "DEBUG", "POPULATE", "200", "sess", "32")


def real_backup(service, instance_id, fmt, remark):
    path = f"/v2/{service.project_id}/instances/{instance_id}/backups"
    body = json.dumps({"backup_format": fmt, "remark": remark}).encode()
    r = service.signed("POST", path, body=body)
    assert r.status_code == 200, r.text
    backup_id = r.json()["backup_id"]

    def done():
        recs = service.signed("GET", path, query={"limit": "5"}).json()["backup_record_response"]
        return any(b["backup_id"] == backup_id and b["status"] == "succeed" for b in recs)

    wait_until(f"backup {backup_id}", done, timeout=60, interval=0.2, on_fail=service.log)
    return backup_id


@pytest.fixture(scope="module")
def fleet(service, redis_factory):
    """Three adopted standalone servers: `orders` full of data with two
    earlier backups, an empty `staging` to restore into, and `archive`
    with an automatic policy and ten days of synthetic records (dev seed)
    to page through and filter."""
    orders = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    staging = redis_factory.start(redis_factory.new())
    archive = redis_factory.start(redis_factory.new())
    populate(orders)
    orders_id = service.adopt(orders, name=unique("orders-cache"))
    staging_id = service.adopt(staging, name=unique("staging-cache"))
    archive_id = service.adopt(archive, name=unique("archive-cache"))
    real_backup(service, orders_id, "aof", "weekly export")
    real_backup(service, orders_id, "rdb", "nightly")
    policy = {"instance_backup_policy": {"backup_type": "auto", "save_days": 3, "periodical_backup_plan": {
        "period_type": "weekly", "backup_at": [1, 2, 3, 4, 5, 6, 7], "begin_at": "01:00-02:00",
        "timezone_offset": "UTC+01:00"}}}
    r = service.signed("PUT", f"/v2/{service.project_id}/instances/{archive_id}", body=json.dumps(policy).encode())
    assert r.status_code == 204, r.text
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)
    service.seed(archive_id, backups=36, restores=4, from_=start.strftime("%Y%m%d%H%M%S"), step_ms=6 * 3600 * 1000)
    names = {i.instance_id: i.name for i in service.list_all().instances}
    return {
        "orders": (orders, orders_id, names[orders_id]),
        "staging": (staging, staging_id, names[staging_id]),
        "archive": (archive, archive_id, names[archive_id]),
        "history_start": start,
    }


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_a_wrong_secret_key_shows_an_error_on_the_sign_in_page(service, browser):
    sign_in(browser, service.endpoint, service.creds, sk="not-the-secret-key")
    err = wait(browser, "the sign-in error", lambda d: visible(d, "#signin-error"))
    assert "not right" in err.text and "DCS.1001" in err.text, err.text
    # Still the sign-in page, with the form usable: not a blank page.
    assert visible(browser, "#signin-form") and not visible(browser, "#view")
    assert browser.find_element(By.CSS_SELECTOR, "#signin-sk").get_attribute("value") == "not-the-secret-key"
    # A project the key does not belong to is named as such.
    creds = dict(service.creds, project_id="0" * 32)
    sign_in(browser, service.endpoint, creds)
    wait(browser, "the project error", lambda d: "another project" in d.find_element(By.CSS_SELECTOR, "#signin-error").text)
    assert_clean(browser, [service.endpoint], allowed_statuses=(401,))


def test_the_page_signs_exactly_like_the_server(service, browser):
    """Both signers of the page (WebCrypto, and the embedded SHA-256 for
    insecure contexts) give the headers `dcs-backup dev sign` gives."""
    browser.get(service.endpoint + "/console/")
    wait(browser, "the console", lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    ak, sk = "AK-console-test", "sk/with+odd=chars and ünïcode"
    host = f"127.0.0.1:{service.port}"
    cases = [
        ("GET", f"/v2/{service.project_id}/instances", "limit=10&offset=0"),
        ("GET", f"/v2/{service.project_id}/instances/abc/backups", "end_time=20240102000000&begin_time=20240101000000&limit=5"),
        ("POST", f"/v2/{service.project_id}/instances/abc/restores", ""),
        ("PUT", "/v2/p/instances/a%20b/", "a=%2B&a=1&z=caf%C3%A9"),
        ("DELETE", "/v1.0/p/instances/x/backups/y", ""),
    ]
    bodies = ["", "", json.dumps({"backup_id": "b", "remark": "naïve ✓", "dry_run": True}), '{"x": 1}', ""]
    for (method, path, query), body in zip(cases, bodies):
        url = f"http://{host}{path}" + (f"?{query}" if query else "")
        out = subprocess.run(
            [BIN, "dev", "sign", "--ak", ak, "--sk", sk, "--method", method, "--url", url, "--body", body],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout
        want = [line.split(": ", 1) for line in out.strip().splitlines()]
        date = dict(want)["x-sdk-date"]
        for mode in ("webcrypto", "js"):
            got = browser.execute_async_script(
                """
                const [ak, sk, mode, req, done] = arguments;
                import('/console/sign.js')
                  .then(async (m) => (await m.Signer.create(ak, sk, mode)).headers(req))
                  .then(done, (e) => done(String(e)));
                """,
                ak, sk, mode, {"method": method, "path": path, "query": query, "host": host, "body": body, "date": date},
            )
            assert got == want, (mode, method, path, got, want)

    # The embedded SHA-256 and HMAC against Python's, at every length
    # around the block boundaries, and RFC 4231's long-key vector.
    rng = random.Random(15)
    msgs = [bytes(rng.randrange(256) for _ in range(n)) for n in (0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000)]
    keys = [b"", b"Jefe", b"\xaa" * 131, bytes(range(64)), bytes(range(65))]
    got = browser.execute_async_script(
        """
        const [msgs, keys, done] = arguments;
        import('/console/sign.js').then((m) => done({
          sha: msgs.map((x) => m.hex(m.sha256(Uint8Array.from(x)))),
          mac: keys.map((k) => msgs.map((x) => m.hex(m.hmacSha256(Uint8Array.from(k), Uint8Array.from(x))))),
        }), (e) => done(String(e)));
        """,
        [list(m) for m in msgs], [list(k) for k in keys],
    )
    assert got["sha"] == [hashlib.sha256(m).hexdigest() for m in msgs]
    assert got["mac"] == [[hmac.new(k, m, hashlib.sha256).hexdigest() for m in msgs] for k in keys]
    assert got["mac"][1][0] != got["mac"][2][0]
    rfc4231_case6 = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    case6 = browser.execute_async_script(
        """
        const done = arguments[0];
        import('/console/sign.js').then((m) => done(m.hex(m.hmacSha256(new Uint8Array(131).fill(0xaa),
          new TextEncoder().encode('Test Using Larger Than Block-Size Key - Hash Key First')))));
        """
    )
    assert case6 == rfc4231_case6
    assert_clean(browser, [service.endpoint])


def test_back_up_set_a_policy_and_restore_into_another_instance(service, client, browser, fleet):
    orders, orders_id, orders_name = fleet["orders"]
    staging, staging_id, staging_name = fleet["staging"]
    base = service.endpoint

    # Sign in (the screenshot shows the form filled, the secret as dots).
    browser.get(base + "/console/")
    wait(browser, "the sign-in form", lambda d: visible(d, "#signin-form"))
    browser.find_element(By.CSS_SELECTOR, "#signin-project").send_keys(service.creds["project_id"])
    browser.find_element(By.CSS_SELECTOR, "#signin-ak").send_keys(service.creds["ak"])
    browser.find_element(By.CSS_SELECTOR, "#signin-sk").send_keys(service.creds["sk"])
    assert not visible(browser, "#insecure"), "127.0.0.1 is a secure context"
    shot(browser, "sign-in")
    browser.find_element(By.CSS_SELECTOR, "#signin-submit").click()

    # The instance list: both instances with address, engine, reachability.
    table = wait(browser, "the instance list", lambda d: visible(d, "#instances"))
    wait(browser, "the instances", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#instances tbody tr")) == 3)
    row = browser.find_element(By.CSS_SELECTOR, f"#instances tr[data-instance-id='{orders_id}']")
    version = orders.info("server")["redis_version"]
    for text in (orders_name, f"127.0.0.1:{orders.port}", "Standalone", f"Redis {version}", "reachable", "Manual backups only"):
        assert text in row.text, (text, row.text)
    assert staging_name in table.text
    archive_row = browser.find_element(By.CSS_SELECTOR, f"#instances tr[data-instance-id='{fleet['archive'][1]}']")
    assert "Automatic: daily, 01:00–02:00 UTC+01:00; kept 3 days" in archive_row.text
    # The secret is not kept anywhere the browser persists.
    stored = browser.execute_script("return JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie])")
    assert service.creds["sk"] not in stored, stored
    shot(browser, "instances")

    # Records are paged 20 at a time, newest first, and filtered by time.
    archive_row.find_element(By.TAG_NAME, "a").click()
    wait(browser, "the backup list", lambda d: visible(d, "#backups"))
    wait(browser, "the totals", lambda d: d.find_element(By.CSS_SELECTOR, "#tab-backups").text == "Backups (36)")
    wait(browser, "the restore total", lambda d: d.find_element(By.CSS_SELECTOR, "#tab-restores").text == "Restores (4)")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#backups tbody tr")) == 20
    assert "1–20 of 36" in browser.find_element(By.CSS_SELECTOR, ".pager").text
    click(browser, "#page-next")
    wait(browser, "the second page", lambda d: "21–36 of 36" in d.find_element(By.CSS_SELECTOR, ".pager").text)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#backups tbody tr")) == 16
    # A range before the history shows nothing; clearing it shows all again.
    browser.execute_script(
        "document.querySelector('#filter-begin').value = '2020-01-01T00:00';"
        "document.querySelector('#filter-end').value = '2020-01-02T00:00';"
    )
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait(browser, "an empty range", lambda d: "No backups in this time range." in d.find_element(By.CSS_SELECTOR, "#records").text)
    browser.find_element(By.CSS_SELECTOR, "#filters button.quiet").click()
    wait(browser, "all records again", lambda d: "1–20 of 36" in d.find_element(By.CSS_SELECTOR, ".pager").text)
    # The first three days of the history: 12 records, one every six hours.
    first_day = fleet["history_start"].astimezone() - datetime.timedelta(minutes=1)
    last_day = first_day + datetime.timedelta(days=3) - datetime.timedelta(minutes=1)
    browser.execute_script(
        "document.querySelector('#filter-begin').value = arguments[0];"
        "document.querySelector('#filter-end').value = arguments[1];",
        first_day.strftime("%Y-%m-%dT%H:%M"), last_day.strftime("%Y-%m-%dT%H:%M"),
    )
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait(browser, "the three days", lambda d: "1–12 of 12" in d.find_element(By.CSS_SELECTOR, ".pager").text)

    # Back up now: the new record appears on top, shows its progress
    # while Redis writes the snapshot slowly (0.2 ms a key, about 5 s),
    # and reaches succeed, all without reloading the page.
    orders.cli("CONFIG", "SET", "rdb-key-save-delay", "200")
    browser.find_element(By.LINK_TEXT, "Instances").click()
    wait(browser, "the instance list", lambda d: visible(d, "#instances"))
    browser.find_element(By.LINK_TEXT, orders_name).click()
    wait(browser, "orders' backups", lambda d: "1–2 of 2" in d.find_element(By.CSS_SELECTOR, ".pager").text)
    click(browser, "#backup-now")
    wait(browser, "the backup dialog", lambda d: visible(d, "#backup-form"))
    browser.find_element(By.CSS_SELECTOR, "#backup-remark").send_keys("before the migration")
    click(browser, "#backup-start")
    wait(browser, "the first page again", lambda d: "1–3 of 3" in d.find_element(By.CSS_SELECTOR, ".pager").text)
    first = browser.find_element(By.CSS_SELECTOR, "#backups tbody tr")
    backup_id = first.get_attribute("data-backup-id")
    assert "before the migration" in first.text
    running = f"#backups tr[data-backup-id='{backup_id}'] progress"
    bar = wait(browser, "a progress bar", lambda d: visible(d, running))
    wait(browser, "progress under way", lambda d: 0 < float(d.find_element(By.CSS_SELECTOR, running).get_attribute("value")) < 100)
    live = browser.find_element(By.CSS_SELECTOR, f"#backups tr[data-backup-id='{backup_id}'] .live").text
    assert "%" in live and ("KiB" in live or " B" in live), live
    assert bar is not None
    shot(browser, "instance")
    wait(browser, "the backup to succeed",
         lambda d: record_status(d, "backups", "data-backup-id", backup_id) in ("succeed", "failed"), timeout=60)
    assert record_status(browser, "backups", "data-backup-id", backup_id) == "succeed", service.log()
    orders.cli("CONFIG", "SET", "rdb-key-save-delay", "0")
    rec = browser.find_element(By.CSS_SELECTOR, f"#backups tr[data-backup-id='{backup_id}']")
    assert "manual · RDB" in rec.text and "Download" in rec.text

    # Download links: an expiring link per file, served by this service.
    rec = browser.find_element(By.CSS_SELECTOR, f"#backups tr[data-backup-id='{backup_id}']")
    rec.find_element(By.CSS_SELECTOR, "[data-action=download]").click()
    link = wait(browser, "a download link", lambda d: visible(d, "#download-body ul.links a"))
    href = link.get_attribute("href")
    assert href.startswith(base + "/downloads/"), href
    assert link.text.endswith(".rdb")
    browser.find_element(By.CSS_SELECTOR, "#dialog .close").click()

    # The policy editor: the API's refusal in words, then a saved policy.
    click(browser, "#policy-open")
    wait(browser, "the policy dialog", lambda d: visible(d, "#policy-form"))
    browser.find_element(By.CSS_SELECTOR, "#policy-auto").click()
    click(browser, "#policy-save")
    err = wait(browser, "the policy error", lambda d: visible(d, "#policy-error"))
    assert "Choose at least one day" in err.text and "DCS.4075" in err.text, err.text
    for day in ("1", "3", "5"):
        browser.find_element(By.CSS_SELECTOR, f"#policy-form input[name=day][value='{day}']").click()
    Select(browser.find_element(By.CSS_SELECTOR, "#policy-window")).select_by_value("02:00-03:00")
    zone = browser.find_element(By.CSS_SELECTOR, "#policy-zone")
    zone.clear()
    zone.send_keys("UTC+08:00")
    keep = browser.find_element(By.CSS_SELECTOR, "#policy-keep")
    keep.clear()
    keep.send_keys("9")
    click(browser, "#policy-save")
    wait(browser, "the keep-days error", lambda d: "DCS.4072" in d.find_element(By.CSS_SELECTOR, "#policy-error").text)
    keep.clear()
    keep.send_keys("7")
    browser.execute_script("document.querySelector('#policy-error').hidden = true")
    shot(browser, "policy")
    click(browser, "#policy-save")
    wait(browser, "the saved policy",
         lambda d: "Mon, Wed, Fri, 02:00–03:00 UTC+08:00; kept 7 days" in d.find_element(By.CSS_SELECTOR, "#policy-summary").text)
    saved = service.signed("GET", f"/v2/{service.project_id}/instances/{orders_id}").json()["instance_backup_policy"]["policy"]
    assert saved["backup_type"] == "auto" and saved["save_days"] == 7, saved
    assert saved["periodical_backup_plan"]["backup_at"] == [1, 3, 5], saved

    # Restore into staging: choose orders' new backup, read the plan, type
    # the target's name, and watch it finish.
    browser.find_element(By.LINK_TEXT, "Instances").click()
    wait(browser, "the instance list", lambda d: visible(d, "#instances"))
    browser.find_element(By.LINK_TEXT, staging_name).click()
    wait(browser, "staging's page", lambda d: visible(d, "#restore-open"))
    assert staging.cli("DBSIZE") == "0"
    click(browser, "#restore-open")
    source = wait(browser, "the source list", lambda d: visible(d, "#restore-source"))
    Select(source).select_by_value(orders_id)
    wait(browser, "orders' backups",
         lambda d: any(o.get_attribute("value") == backup_id for o in Select(d.find_element(By.CSS_SELECTOR, "#restore-backup")).options))
    Select(browser.find_element(By.CSS_SELECTOR, "#restore-backup")).select_by_value(backup_id)
    click(browser, "#restore-check")
    plan = wait(browser, "the dry-run plan", lambda d: visible(d, "#restore-plan .plan"))
    text = browser.find_element(By.CSS_SELECTOR, "#restore-plan").text
    keys = int(orders.cli("DBSIZE")) + int(orders.cli("-n", "1", "DBSIZE"))
    assert "Plan" in plan.text and "Replication feed" in plan.text, text
    assert f"{keys:,}" in text, (keys, text)
    assert "db0: " in text and "db1: 200 keys" in text, text
    assert staging.cli("DBSIZE") == "0", "a dry run writes nothing"
    go = browser.find_element(By.CSS_SELECTOR, "#restore-start")
    typed = browser.find_element(By.CSS_SELECTOR, "#restore-confirm-name")
    typed.send_keys(orders_name)
    assert not go.is_enabled(), "another instance's name does not confirm"
    typed.clear()
    typed.send_keys(staging_name)
    shot(browser, "restore-plan")
    assert go.is_enabled()
    go.click()
    wait(browser, "the restore list", lambda d: visible(d, "#restores tbody tr"))
    restore_id = browser.find_element(By.CSS_SELECTOR, "#restores tbody tr").get_attribute("data-restore-id")
    wait(browser, "the restore to finish",
         lambda d: record_status(d, "restores", "data-restore-id", restore_id) in ("succeed", "failed"), timeout=60)
    assert record_status(browser, "restores", "data-restore-id", restore_id) == "succeed", service.log()
    # The data is in the target: the same dataset as the source's.
    assert staging.cli("DBSIZE") == orders.cli("DBSIZE")
    assert staging.cli("-n", "1", "DBSIZE") == "200"
    assert staging.cli("DEBUG", "DIGEST") == orders.cli("DEBUG", "DIGEST")
    assert staging.cli("HGET", "customer:1", "city") == "Zürich"
    assert staging.info("replication")["role"] == "master"
    assert_clean(browser, [base], allowed_statuses=(400,))


def test_a_refused_plan_is_shown_in_words_and_cannot_be_confirmed(service, browser, fleet):
    """A dry run the plan refuses (the dataset does not fit the target's
    maxmemory) says why, and offers no way to start the restore."""
    orders, orders_id, orders_name = fleet["orders"]
    staging, staging_id, staging_name = fleet["staging"]
    sign_in(browser, service.endpoint, service.creds)
    wait(browser, "the instance list", lambda d: visible(d, "#instances"))
    before = staging.cli("DEBUG", "DIGEST")
    staging.cli("CONFIG", "SET", "maxmemory", "200kb")
    try:
        browser.find_element(By.LINK_TEXT, staging_name).click()
        click(browser, "#restore-open")
        source = wait(browser, "the source list", lambda d: visible(d, "#restore-source"))
        Select(source).select_by_value(orders_id)
        wait(browser, "orders' backups", lambda d: len(Select(d.find_element(By.CSS_SELECTOR, "#restore-backup")).options) >= 3
             and d.find_element(By.CSS_SELECTOR, "#restore-backup").get_attribute("value"))
        click(browser, "#restore-check")
        refused = wait(browser, "the refusal", lambda d: visible(d, "#restore-plan .plan.refused"))
        assert "would be refused" in refused.text and "maxmemory" in refused.text, refused.text
        assert "dcs.08.0001" in refused.text, refused.text
        assert not browser.find_elements(By.CSS_SELECTOR, "#restore-start, #restore-confirm-name")
    finally:
        staging.cli("CONFIG", "SET", "maxmemory", "0")
    assert staging.cli("DEBUG", "DIGEST") == before, "a refused dry run writes nothing"
    assert_clean(browser, [service.endpoint])


def test_over_plain_http_from_another_host_it_warns_and_still_signs(service, browser, fleet):
    """Not a secure context: no WebCrypto, the embedded signer signs, and
    the page says the connection is not encrypted."""
    base = f"http://{INSECURE_HOST}:{service.port}"
    sign_in(browser, base, service.creds)
    assert browser.execute_script("return window.isSecureContext") is False
    banner = wait(browser, "the insecure-context notice", lambda d: visible(d, "#insecure"))
    assert "not encrypted" in banner.text and "--tls-cert" in banner.text
    wait(browser, "the instance list", lambda d: visible(d, "#instances"))
    assert fleet["orders"][2] in browser.find_element(By.CSS_SELECTOR, "#instances").text
    # Sign out forgets the session.
    browser.find_element(By.CSS_SELECTOR, "#signout").click()
    wait(browser, "the sign-in form", lambda d: visible(d, "#signin-form"))
    assert browser.find_element(By.CSS_SELECTOR, "#signin-sk").get_attribute("value") == ""
    assert browser.execute_script("return sessionStorage.length") == 0
    assert_clean(browser, [base])


def test_pitr_panel_sets_the_policy_lists_periods_and_restores_to_a_typed_time(service, browser, redis_factory):
    """Turn point-in-time recovery on from the instance page, see a
    restorable period appear, type an instant inside it (the browser's
    own time zone), confirm with the instance's name, and find the data
    as it was then."""
    shop = redis_factory.start(redis_factory.new(["--repl-diskless-sync-delay", "0"]))
    shop_id = service.adopt(shop, name=unique("pitr-shop"))
    name = service.signed("GET", f"/v2/{service.project_id}/instances/{shop_id}").json()["name"]
    base = service.endpoint
    sign_in(browser, base, service.creds)
    wait(browser, "the instance list", lambda d: visible(d, "#instances"))
    browser.get(f"{base}/console/#/instances/{shop_id}")
    wait(browser, "the PITR panel", lambda d: visible(d, "#pitr-policy-form"))
    assert "Off" in browser.find_element(By.CSS_SELECTOR, "#pitr-summary").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#pitr-restore-form"), "no history, no restore form"
    # A refused interval is shown in words, nothing changes.
    click(browser, "#pitr-enabled")
    interval = browser.find_element(By.CSS_SELECTOR, "#pitr-interval")
    interval.clear()
    interval.send_keys("4")
    click(browser, "#pitr-save")
    wait(browser, "the refusal", lambda d: "DCS.4800" in d.find_element(By.CSS_SELECTOR, "#pitr-policy-error").text)
    policy = service.signed("GET", f"/v3/{service.project_id}/redis/instances/{shop_id}/pitr/policy").json()
    assert policy["enabled"] is False, policy
    interval.clear()
    interval.send_keys("30")
    click(browser, "#pitr-save")
    wait(browser, "the policy on", lambda d: "a base every 30 min" in d.find_element(By.CSS_SELECTOR, "#pitr-summary").text)
    policy = service.signed("GET", f"/v3/{service.project_id}/redis/instances/{shop_id}/pitr/policy").json()
    assert (policy["enabled"], policy["interval"]) == (True, 30), policy
    periods_path = f"/v3/{service.project_id}/redis/instances/{shop_id}/pitr/restorable-time-periods"
    wide = {"start_time": "2000-01-01T00:00:00Z", "end_time": "2100-01-01T00:00:00Z"}
    wait_until("capture started", lambda: service.signed("GET", periods_path, query=wide).json()["total_count"] > 0,
               timeout=30, interval=0.5, on_fail=service.log)
    shop.cli("SET", "price", "10")
    time.sleep(1.0)
    then = time.time()
    digest = shop.cli("DEBUG", "DIGEST")
    time.sleep(1.5)
    shop.cli("SET", "price", "99")
    shop.cli("SET", "later", "x")

    def covers():
        r = service.signed("GET", periods_path, query=wide).json()
        for p in r.get("restore_time") or []:
            a, b = (datetime.datetime.strptime(x, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
                    for x in p.split("/"))
            if a <= then <= b:
                return True
        return False

    wait_until("a period covering the instant", covers, timeout=40, interval=0.5, on_fail=service.log)
    # Back to the page (through the list): the panel lists the period.
    browser.find_element(By.LINK_TEXT, "Instances").click()
    wait(browser, "the instance list", lambda d: visible(d, "#instances"))
    browser.find_element(By.LINK_TEXT, name).click()
    wait(browser, "the restore form", lambda d: visible(d, "#pitr-restore-form") and d.find_elements(By.CSS_SELECTOR, "#pitr-periods li"))
    # The instant typed as the browser's local time, to the millisecond.
    local = browser.execute_script(
        "const d = new Date(arguments[0]); const p = (n, w = 2) => String(n).padStart(w, '0');"
        "return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:"
        "${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;",
        int(then * 1000),
    )
    browser.find_element(By.CSS_SELECTOR, "#pitr-time").send_keys(local)
    go = browser.find_element(By.CSS_SELECTOR, "#pitr-restore")
    typed = browser.find_element(By.CSS_SELECTOR, "#pitr-confirm-name")
    typed.send_keys(name + "x")
    assert not go.is_enabled(), "a wrong name does not confirm"
    typed.clear()
    typed.send_keys(name)
    shot(browser, "pitr")
    assert go.is_enabled()
    go.click()
    wait(browser, "the restore record", lambda d: visible(d, "#restores tbody tr"))
    restore_id = browser.find_element(By.CSS_SELECTOR, "#restores tbody tr").get_attribute("data-restore-id")
    wait(browser, "the restore to finish",
         lambda d: record_status(d, "restores", "data-restore-id", restore_id) in ("succeed", "failed"), timeout=60)
    assert record_status(browser, "restores", "data-restore-id", restore_id) == "succeed", service.log()
    assert "pitr_" in browser.find_element(By.CSS_SELECTOR, "#restores tbody tr").text
    assert shop.cli("GET", "price") == "10" and shop.cli("EXISTS", "later") == "0"
    assert shop.cli("DEBUG", "DIGEST") == digest
    assert_clean(browser, [base], allowed_statuses=(400,))
