"""The web console in a real browser (Debian's chromium and chromium-driver, driven by Selenium):
sign in as operator; a seat checked out by `licensectl checkout` appears on the dashboard and on
the feature page; revoke it from the page with a reason; the holder process reports the
revocation; the dashboard count drops. Then as auditor: the revoke control is absent and a forged
POST is refused (403). A screenshot of each page is written to SCREENSHOTS.

Usage: browser_test.py LICENSED LICENSECTL WORK_DIR CONSOLE_PORT PROTOCOL_PORT SCREENSHOTS"""
import http.client
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from wire import Checks, exit_on_sigterm, stop_daemon, wait_for_port

licensed, licensectl, work, console_port, protocol_port, screenshots = sys.argv[1:7]
console_port, protocol_port = int(console_port), int(protocol_port)
base = f"http://127.0.0.1:{console_port}"
OPERATOR, AUDITOR = "console-operator-token", "console-auditor-token"
check = Checks()
exit_on_sigterm()
os.makedirs(screenshots, exist_ok=True)


def shot(browser, name):
    browser.save_screenshot(os.path.join(screenshots, f"{name}.png"))


def in_use(browser, feature):
    cells = browser.find_elements(By.CSS_SELECTOR, f'tr[data-feature="{feature}"] td.in-use')
    return cells[0].text if cells else None


def wait_until(condition, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def sign_in(browser, token):
    browser.get(base + "/login")
    field = WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "token")))
    field.send_keys(token)
    browser.find_element(By.ID, "sign-in").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "live")))


daemon_log = open(os.path.join(work, "browser-daemon.log"), "wb")
daemon = subprocess.Popen([licensed, "--config", os.path.join(work, "licensed.yaml")], stdout=daemon_log, stderr=daemon_log)
holder = None
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"]:
    options.add_argument(argument)
browser = None
try:
    check(wait_for_port(console_port) and wait_for_port(protocol_port), "the daemon listens")
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    browser.set_page_load_timeout(30)

    # A holder: licensectl checkout, heartbeating until its lease is taken away.
    holder_out = open(os.path.join(work, "holder.out"), "wb")
    holder = subprocess.Popen([licensectl, "checkout", "cad", "--server", f"127.0.0.1:{protocol_port}"], stdout=holder_out, stderr=holder_out,
                              env=dict(os.environ, USER="browser-holder"))
    check(wait_until(lambda: b"holding it" in open(os.path.join(work, "holder.out"), "rb").read()), "licensectl checkout holds a seat")

    browser.get(base + "/")
    check("/login" in browser.current_url, "an unsigned browser is sent to sign-in")
    shot(browser, "sign-in")
    sign_in(browser, OPERATOR)
    check(browser.current_url.rstrip("/") == base, "signed in as operator, on the dashboard")
    check(wait_until(lambda: in_use(browser, "cad") == "1"), f"the dashboard shows the seat in use ({in_use(browser, 'cad')})")
    shot(browser, "dashboard")

    browser.find_element(By.LINK_TEXT, "cad").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "holders")))
    row = browser.find_elements(By.CSS_SELECTOR, "#holders tr[data-lease]")
    check(len(row) == 1 and row[0].find_element(By.CSS_SELECTOR, "td.user").text == "browser-holder", "the feature page lists the holder")
    shot(browser, "feature")
    form = row[0].find_element(By.CSS_SELECTOR, "form.revoke")
    form.find_element(By.NAME, "reason").send_keys("reclaimed for the audit")
    form.find_element(By.CSS_SELECTOR, "button.revoke-lease").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "p.notice")))
    check("Revoked 1 lease" in browser.find_element(By.CSS_SELECTOR, "p.notice").text, "the page says the lease was revoked")
    shot(browser, "feature-revoked")
    check(wait_until(lambda: b"reclaimed for the audit" in open(os.path.join(work, "holder.out"), "rb").read()),
          "the holder process reports the revocation with its reason")

    browser.get(base + "/")
    check(wait_until(lambda: in_use(browser, "cad") == "0"), f"the dashboard count drops to 0 ({in_use(browser, 'cad')})")
    shot(browser, "dashboard-after")
    browser.find_element(By.LINK_TEXT, "Licences").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "licences")))
    check(browser.find_elements(By.CSS_SELECTOR, 'tr[data-licence="console-cad"]'), "the licences page lists the licence")
    shot(browser, "licences")
    browser.find_element(By.LINK_TEXT, "Audit").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "verify"))).click()
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "verification")))
    check(browser.find_element(By.ID, "verification").text.startswith("OK:"), "the audit page verifies the chain")
    shot(browser, "audit")
    browser.find_element(By.LINK_TEXT, "Server").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "snapshot"))).click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "p.notice")))
    check("Snapshot written" in browser.find_element(By.CSS_SELECTOR, "p.notice").text, "a snapshot taken from the server page")
    shot(browser, "server")

    # Activations: a device list uploaded through the page's file input; the run's rows shown.
    devices = os.path.join(work, "browser-devices.csv")
    with open(devices, "w") as f:
        f.write("DeviceID\nWS-101\nWS-102\nWS-103\n")
    browser.find_element(By.LINK_TEXT, "Activations").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "devices"))).send_keys(devices)
    browser.find_element(By.ID, "bulk-run").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "run-title")))
    check("3 applied, 0 failed" in browser.find_element(By.ID, "run-title").text, f"a bulk run from an uploaded file: {browser.find_element(By.ID, 'run-title').text}")
    shot(browser, "activations-run")
    browser.find_element(By.LINK_TEXT, "Activations").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "activations")))
    check(len(browser.find_elements(By.CSS_SELECTOR, "#activations tr[data-activation]")) == 3, "the activations page lists the three devices")
    shot(browser, "activations")
    browser.find_element(By.LINK_TEXT, "Reports").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "svg.chart")))
    check(browser.find_elements(By.CSS_SELECTOR, "svg.chart path.peak") and browser.find_element(By.ID, "peak").text == "1",
          f"the reports page draws the chart with the peak of 1 seat ({browser.find_element(By.ID, 'peak').text})")
    shot(browser, "reports")

    # An auditor: no revoke control; a forged POST with its session and CSRF token is refused.
    browser.find_element(By.CSS_SELECTOR, "form.signout button").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "token")))
    sign_in(browser, AUDITOR)
    again = subprocess.Popen([licensectl, "checkout", "cad", "--server", f"127.0.0.1:{protocol_port}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=dict(os.environ, USER="second-holder"))
    browser.get(base + "/features/cad")
    check(wait_until(lambda: (browser.refresh() or True) and len(browser.find_elements(By.CSS_SELECTOR, "#holders tr[data-lease]")) == 1),
          "the auditor sees the new holder")
    check(not browser.find_elements(By.CSS_SELECTOR, "button.revoke-lease") and not browser.find_elements(By.CSS_SELECTOR, "form.revoke"),
          "the auditor's feature page has no revoke control")
    shot(browser, "feature-auditor")
    cookie = browser.get_cookie("licensed_console")
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', browser.page_source).group(1)
    lease = browser.find_element(By.CSS_SELECTOR, "#holders tr[data-lease]").get_attribute("data-lease")
    conn = http.client.HTTPConnection("127.0.0.1", console_port, timeout=30)
    conn.request("POST", "/features/cad/revoke", body=urllib.parse.urlencode({"csrf": csrf, "lease": lease, "reason": "forged"}),
                 headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"licensed_console={cookie['value']}"})
    status = conn.getresponse().status
    check(status == 403, f"a forged revoke POST with the auditor's session is refused ({status})")
    browser.refresh()
    check(len(browser.find_elements(By.CSS_SELECTOR, "#holders tr[data-lease]")) == 1, "... and the seat is still held")
    again.send_signal(signal.SIGINT)
    again.wait(timeout=20)
finally:
    if browser is not None:
        browser.quit()
    if holder is not None and holder.poll() is None:
        holder.kill()
    stop_daemon(daemon, daemon_log)
shots = sorted(os.listdir(screenshots))
check(len(shots) >= 12, f"a screenshot of each page: {', '.join(shots)}")
check.finish("browser")
