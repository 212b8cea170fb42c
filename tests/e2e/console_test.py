"""The web console over HTTP, against a real daemon: every page without a session redirects to
sign-in; a form without its CSRF token is refused; a client-supplied user name is shown escaped;
the session cookie is HttpOnly and SameSite=Strict; a sixth wrong token within a minute is slowed;
an auditor sees no revoke control and a forged revoke POST with the auditor's own session is
refused (403); the operator's revoke reaches the holder with its reason and the audit trail names
the console role; with no token configured the console is off and /metrics still serves.

Also: the activations page (search, a bulk run from an uploaded CSV with its per-row results,
export, deactivation; none of it for an auditor), the reports page (an SVG chart of seats in use,
usage, compliance and forecast, each as CSV), the dashboard's denials in the last hour and last
snapshot, and HTTPS on the operator listener with the console reaching an mTLS protocol listener.

Usage: console_test.py LICENSED WORK_DIR CONSOLE_PORT PROTOCOL_PORT OFF_CONSOLE_PORT TLS_CONSOLE_PORT
(WORK_DIR holds licensed.yaml, licensed-off.yaml, licensed-tls.yaml and the test CA ca.pem.) Needs the Python code protoc generates
from Protos/ on PYTHONPATH."""
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.parse

from licensed.v1 import protocol_pb2
from wire import Checks, Connection, exit_on_sigterm, stop_daemon, wait_for_port

licensed, work, console_port, protocol_port, off_port, tls_port = sys.argv[1:7]
console_port, protocol_port, off_port, tls_port = int(console_port), int(protocol_port), int(off_port), int(tls_port)
OPERATOR, AUDITOR, CLIENT = "console-operator-token", "console-auditor-token", "console-client-token"
check = Checks()
exit_on_sigterm()


def request(method, path, body=None, cookie=None, port=None, files=None, tls=None):
    """(status, headers dict (lower-case names, Set-Cookie kept whole), body text). `files`
    ({name: (filename, text)}) sends the body as multipart/form-data; `tls` is an SSLContext."""
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port or console_port, timeout=30, context=tls)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port or console_port, timeout=30)
    headers = {}
    if files is not None:
        boundary = "----console-test-7d1f"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n' for name, value in (body or {}).items()]
        parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: text/csv\r\n\r\n{text}\r\n'
                  for name, (filename, text) in files.items()]
        body = ("".join(parts) + f"--{boundary}--\r\n").encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    elif body is not None:
        body = urllib.parse.urlencode(body)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if cookie:
        headers["Cookie"] = cookie
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    text = response.read().decode(errors="replace")
    result = (response.status, {k.lower(): v for k, v in response.getheaders()}, text)
    conn.close()
    return result


def sign_in(token, port=None, tls=None):
    status, headers, _ = request("POST", "/login", {"token": token, "next": "/"}, port=port, tls=tls)
    cookie = headers.get("set-cookie", "")
    return status, cookie, cookie.split(";")[0]


def csrf_of(page):
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    return match.group(1) if match else ""


def start(config, name):
    log = open(os.path.join(work, f"{name}.log"), "wb")
    daemon = subprocess.Popen([licensed, "--config", config], stdout=log, stderr=log)
    return daemon, log


daemon, log = start(os.path.join(work, "licensed.yaml"), "daemon")
try:
    check(wait_for_port(console_port) and wait_for_port(protocol_port), "the daemon listens (protocol and operator ports)")

    # 1. Without a session every page redirects to sign-in.
    for path in ["/", "/features/cad", "/features/cad?contains=x", "/licences", "/server", "/audit", "/activations", "/activations.csv",
                 "/activations/history", "/reports", "/reports/usage"]:
        status, headers, _ = request("GET", path)
        location = headers.get("location", "")
        check(status == 303 and location.startswith("/login?next="), f"GET {path} without a session: {status} to {location}")
    status, _, page = request("GET", "/login")
    check(status == 200 and 'name="token"' in page, "the sign-in page is served")

    # 2. The cookie: HttpOnly, SameSite=Strict, an expiry; a client token cannot sign in.
    status, set_cookie, operator = sign_in(OPERATOR)
    attributes = [part.strip().lower() for part in set_cookie.split(";")]
    check(status == 303 and "httponly" in attributes and "samesite=strict" in attributes and any(a.startswith("max-age=") for a in attributes),
          f"the session cookie is HttpOnly and SameSite=Strict with an expiry ({set_cookie.split(';', 1)[1].strip()})")
    check(sign_in(CLIENT)[0] == 403, "a client token cannot sign in (403)")

    # 3. A holder whose user name is markup: shown escaped.
    evil = "<script>alert(1)</script>"
    holder = Connection(protocol_port, user=evil)
    message = protocol_pb2.ClientMessage()
    message.check_out.feature = "cad"
    lease = holder.call(message).check_out.lease_id
    status, _, page = request("GET", "/features/cad", cookie=operator)
    check(status == 200 and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and evil not in page,
          "a client-supplied user name <script>alert(1)</script> is shown escaped")
    check('<td class="address">127.0.0.1</td>' in page, "the holder's network address is shown")
    status, _, dashboard = request("GET", "/", cookie=operator)
    check(status == 200 and re.search(r'data-feature="cad">.*?class="in-use">1<', dashboard, re.S) is not None, "the dashboard counts the seat")
    csp = request("GET", "/", cookie=operator)[1].get("content-security-policy", "")
    check("script-src 'self'" in csp and "frame-ancestors 'none'" in csp, f"pages carry a Content-Security-Policy ({csp[:40]}…)")

    # 4. Forms need their CSRF token.
    status, _, _ = request("POST", "/features/cad/revoke", {"lease": lease.hex(), "reason": "no csrf"}, cookie=operator)
    check(status == 403, f"a revoke POST without the CSRF token is refused ({status})")
    status, _, _ = request("POST", "/features/cad/revoke", {"lease": lease.hex(), "csrf": "0" * 64}, cookie=operator)
    check(status == 403, f"... and with a wrong one ({status})")
    status, _, _ = request("POST", "/logout", {}, cookie=operator)
    check(status == 403, "a sign-out POST without the CSRF token is refused")
    status, _, _ = request("POST", "/features/cad/revoke", {"lease": lease.hex(), "csrf": csrf_of(page)})
    check(status == 403, "a revoke POST without a session is refused")

    # 5. An auditor: no revoke control, and a forged POST with its own valid CSRF token is refused.
    status, _, auditor = sign_in(AUDITOR)
    status, _, auditor_page = request("GET", "/features/cad", cookie=auditor)
    check(status == 200 and "&lt;script&gt;" in auditor_page and 'class="revoke-lease"' not in auditor_page and "/revoke" not in auditor_page,
          "an auditor sees the holders and no revoke control")
    status, _, _ = request("POST", "/features/cad/revoke", {"lease": lease.hex(), "csrf": csrf_of(auditor_page), "reason": "forged"}, cookie=auditor)
    check(status == 403, f"an auditor's forged revoke POST is refused ({status})")

    # 6. The operator revokes with a reason; the holder is told it.
    status, headers, _ = request("POST", "/features/cad/revoke", {"lease": lease.hex(), "csrf": csrf_of(page), "reason": "seat audit"}, cookie=operator)
    check(status == 303 and "Revoked" in urllib.parse.unquote(headers.get("location", "")), f"the operator's revoke is done ({status})")
    holder.sock.settimeout(10)
    event = holder.read_reply()
    check(event.WhichOneof("body") == "event" and event.event.kind == protocol_pb2.Event.LEASE_REVOKED and "seat audit" in event.event.message,
          f"the holder is told, with the reason: {event.event.message}")
    holder.close()
    status, _, page = request("GET", "/features/cad", cookie=operator)
    check("Nobody holds a seat." in page, "the feature page shows the seat free")

    # 7. The licences page (terms as a licence file's header says them) and the server page.
    status, _, licences = request("GET", "/licences", cookie=operator)
    check(status == 200 and 'data-licence="console-cad"' in licences and "cad 3" in licences and "COMPLIANT" in licences,
          "the licences page lists the licence in force with its features, counts and state")
    status, _, server = request("GET", "/server", cookie=auditor)
    check(status == 200 and 'id="reload"' not in server and request("POST", "/server/reload", {"csrf": csrf_of(server)}, cookie=auditor)[0] == 403,
          "an auditor has no reload control on the server page, and its POST is refused")
    status, _, server = request("GET", "/server", cookie=operator)
    status, headers, _ = request("POST", "/server/reload", {"csrf": csrf_of(server)}, cookie=operator)
    check(status == 303 and "Reloaded: 3 licence" in urllib.parse.unquote(headers.get("location", "")), "the operator reloads the licences")
    status, headers, _ = request("POST", "/server/snapshot", {"csrf": csrf_of(server)}, cookie=operator)
    check(status == 303 and "Snapshot written" in urllib.parse.unquote(headers.get("location", "")), "... and takes a snapshot")

    # The audit page: recent records filtered, and the chain verified.
    status, _, audit = request("GET", "/audit?action=console_sign_in", cookie=auditor)
    actions = set(re.findall(r'<tr data-action="([a-z_]+)"', audit))
    check(status == 200 and actions == {"console_sign_in"}, f"the audit page filters by action ({sorted(actions)})")
    status, _, audit = request("GET", "/audit?verify=1", cookie=auditor)
    verified = re.search(r'id="verification" class="good">(OK: [^<]*)<', audit)
    check(status == 200 and verified is not None, f"the audit page verifies the hash chain ({verified.group(1) if verified else 'no OK'})")

    # 7b. The dashboard: a refused check-out counts in the last hour; the snapshot just taken is shown.
    denied = Connection(protocol_port, user="greedy")
    message = protocol_pb2.ClientMessage()
    message.check_out.feature = "cad"
    message.check_out.count = 4
    check(denied.call(message).WhichOneof("body") == "error", "a check-out of 4 of 3 seats is refused")
    denied.close()
    status, _, dashboard = request("GET", "/?fragment=1", cookie=auditor)
    check(re.search(r'data-feature="cad">.*?class="denials">1<', dashboard, re.S) is not None, "the dashboard shows the denial in the last hour")
    order = re.findall(r'<tr data-licence="([^"]+)"><td>[^<]*</td><td class="state (\w+)">', dashboard)
    check([licence for licence, _ in order] == ["console-soon", "console-cad", "console-part"] and order[0][1] == "warn",
          f"the dashboard lists every licence by expiry, the one ending in 10 days first and flagged ({order})")
    snapshot = re.search(r'id="last-snapshot">([^<]*)<', dashboard)
    check(snapshot is not None and "up to change" in snapshot.group(1), f"... and the last snapshot ({snapshot.group(1) if snapshot else 'none'})")

    # 7c. Activations: a bulk run from an uploaded file, its rows, search, export, deactivation.
    status, _, activations = request("GET", "/activations", cookie=operator)
    check(status == 200 and 'id="bulk"' in activations and '<option value="console-part">' in activations,
          "the activations page offers a bulk run of the node-locked part")
    devices = "DeviceID,Owner\nDEV-1,ada\nDEV-2,bob\n,nobody\n"
    status, _, _ = request("POST", "/activations/bulk", {"part": "console-part", "action": "assign"}, cookie=operator,
                           files={"devices": ("devices.csv", devices)})
    check(status == 403, "a bulk upload without the CSRF token is refused")
    status, headers, _ = request("POST", "/activations/bulk", {"csrf": csrf_of(activations), "part": "console-part", "action": "assign"},
                                 cookie=operator, files={"devices": ("devices.csv", devices)})
    location = headers.get("location", "")
    check(status == 303 and location.startswith("/activations/history?run="), f"the bulk run is done and shown ({status} {location})")
    status, _, run = request("GET", location, cookie=operator)
    results = re.findall(r'<tr><td>(\d+)</td><td>([^<]*)</td><td class="(?:good|bad)">(applied|failed)</td><td>([^<]*)</td>', run)
    check([r[2] for r in results] == ["applied", "applied", "failed"] and "no device" in results[2][3],
          f"the run's rows: two applied, the empty one failed with its reason ({results})")
    status, _, found = request("GET", "/activations?contains=DEV-2", cookie=operator)
    rows = re.findall(r'<tr data-activation="([^"]+)">', found)
    check(status == 200 and len(rows) == 1 and 'class="device">DEV-2<' in found and "Activations (1)" in found,
          "search finds DEV-2 alone")
    status, headers, export = request("GET", "/activations.csv", cookie=auditor)
    lines = export.strip().splitlines()
    check(status == 200 and headers.get("content-type", "").startswith("text/csv") and "attachment" in headers.get("content-disposition", "")
          and lines[0] == "Part Name,Part ID,Assigned Date,Status,Device ID,Device Name,User,Last Seen" and len(lines) == 3,
          f"the export is a CSV download with both activations ({len(lines) - 1} rows)")
    status, _, history = request("GET", "/activations/history.csv", cookie=auditor)
    check(status == 200 and history.count(",assign,") == 3, "the history of bulk runs downloads as CSV, a line per row")
    status, _, auditor_activations = request("GET", "/activations", cookie=auditor)
    check(status == 200 and 'id="bulk"' not in auditor_activations and 'class="deactivate"' not in auditor_activations,
          "an auditor sees the activations and no bulk or deactivate control")
    check(request("POST", "/activations/deactivate", {"csrf": csrf_of(auditor_activations), "activation": rows[0]}, cookie=auditor)[0] == 403,
          "an auditor's forged deactivate POST is refused")
    status, headers, _ = request("POST", "/activations/deactivate", {"csrf": csrf_of(found), "activation": rows[0], "reason": "left"}, cookie=operator)
    check(status == 303 and "Deactivated" in urllib.parse.unquote(headers.get("location", "")), "the operator deactivates DEV-2")
    check("Activations (0)" in request("GET", "/activations?contains=DEV-2", cookie=operator)[2], "... and it is gone from the list")

    # 7d. Reports: the chart, the tables, the downloads.
    status, _, reports = request("GET", "/reports?by=user", cookie=auditor)
    peak = re.search(r'id="peak">(\d+)<', reports)
    check(status == 200 and '<svg class="chart"' in reports and 'class="peak"' in reports and 'class="capacity"' in reports,
          "the reports page draws seats in use as SVG, with the capacity")
    check(peak is not None and int(peak.group(1)) >= 1 and 'id="usage"' in reports and "&lt;script&gt;alert(1)&lt;/script&gt;" in reports
          and evil not in reports, f"... its peak ({peak.group(1) if peak else '?'}) and usage by user, user names escaped")
    check('id="compliance"' in reports and "console-cad" in reports and 'id="forecast"' in reports and "feature:cad" in reports,
          "... compliance per licence and a forecast per feature")
    for report, header in [("usage?by=user", "user,checkouts,"), ("compliance", "license,product,"), ("forecast?months=6", "subject,current,"),
                           ("series?feature=cad", "from,to,peak,")]:
        status, headers, text = request("GET", "/reports/" + report, cookie=auditor)
        check(status == 200 and headers.get("content-type", "").startswith("text/csv") and text.startswith(header),
              f"/reports/{report} downloads as CSV ({text[:24]!r})")
    check(request("GET", "/reports?from=yesterday", cookie=auditor)[0] == 400, "a report with a bad date is a 400 with the reason")
    status, _, chart = request("GET", "/reports?feature=" + urllib.parse.quote(evil), cookie=auditor)
    check(status == 200 and evil not in chart, "a feature name in the chart's title is escaped")

    # 8. Sign-out ends the session.
    status, _, _ = request("POST", "/logout", {"csrf": csrf_of(page)}, cookie=operator)
    check(status == 303 and request("GET", "/", cookie=operator)[0] == 303, "sign-out ends the session")

    # 9. Wrong tokens: past bad_token_limit (5) a minute the answer is held back (bad_token_delay_ms 1500).
    took = []
    for attempt in range(6):
        started = time.monotonic()
        status = sign_in(f"wrong-{attempt}")[0]
        took.append(time.monotonic() - started)
    check(status == 401 and took[5] >= 1.4, f"the sixth wrong token within a minute is slowed ({took[5]:.2f} s; 401)")
finally:
    stop_daemon(daemon, log)

records = subprocess.run([os.path.join(os.path.dirname(licensed), "licensectl"), "audit", "export", "--dir", os.path.join(work, "state", "audit"),
                          "--format", "json"], capture_output=True, text=True).stdout
records = [json.loads(line) for line in records.splitlines() if line.strip()]
actions = [r.get("action") for r in records]
check(actions.count("console_sign_in") >= 2, "sign-ins are in the audit trail")
check("console_refused" in actions and "console_sign_out" in actions and "token_rejected" in actions,
      "refused forms, the sign-out and the wrong tokens are in the audit trail")
revoked = [r for r in records if r.get("action") in ("revoke", "checkin") and "console-operator@" in r.get("actor", "")]
check(revoked and revoked[0].get("details", {}).get("role") == "operator" and revoked[0]["details"].get("reason") == "seat audit",
      "the revoke is recorded with the console's actor, the signed-in role and the reason")

# 10. No token configured: the console is off, /metrics still serves.
daemon, log = start(os.path.join(work, "licensed-off.yaml"), "daemon-off")
try:
    check(wait_for_port(off_port), "a daemon without tokens starts")
    check(request("GET", "/metrics", port=off_port)[0] == 200, "without tokens /metrics serves")
    check(request("GET", "/", port=off_port)[0] == 404 and request("GET", "/login", port=off_port)[0] == 404, "... and the console is off (404)")
finally:
    stop_daemon(daemon, log)
# 11. HTTPS on the operator listener; the console reaches a protocol listener that requires client certificates.
daemon, log = start(os.path.join(work, "licensed-tls.yaml"), "daemon-tls")
try:
    check(wait_for_port(tls_port), "a daemon with TLS on both listeners starts")
    context = ssl.create_default_context(cafile=os.path.join(work, "ca.pem"))
    status, set_cookie, cookie = sign_in(OPERATOR, port=tls_port, tls=context)
    attributes = [part.strip().lower() for part in set_cookie.split(";")]
    check(status == 303 and "secure" in attributes and "httponly" in attributes, f"over HTTPS the session cookie is Secure ({set_cookie.split(';', 1)[-1].strip()})")
    status, _, page = request("GET", "/", cookie=cookie, port=tls_port, tls=context)
    check(status == 200 and 'data-feature="cad"' in page, "the dashboard is served over HTTPS, read through an mTLS protocol session")
    check(request("GET", "/metrics", port=tls_port, tls=context)[0] == 200, "/metrics is served over HTTPS too")
    try:
        request("GET", "/metrics", port=tls_port)
        plain = "answered"
    except (ConnectionError, http.client.HTTPException, OSError) as error:
        plain = type(error).__name__
    check(plain != "answered", f"plain HTTP gets no answer from the HTTPS listener ({plain})")
finally:
    stop_daemon(daemon, log)
check.finish("console")
