"""Clock setback with real processes: libfaketime sets the daemon's wall clock, restart by restart.
A daemon that served at real time, restarted 3 days back, refuses its time-limited licence with
CLOCK_SETBACK naming about 3 days, keeps serving its perpetual one, and says so in /readyz,
/metrics, `licensectl status`, its log and its audit trail; restarted 1 hour back (inside the
24-hour tolerance) nothing changes; restarted at real time it serves again; a licence that
expired 30 days ago is not made valid by starting 60 days in the past, as the state holds later
times.

Usage: setback_test.py LICENSED LICENSECTL CONFIG PORT METRICS_PORT ADMIN_TOKEN TIMESTAMP_FILE LIBFAKETIME
Needs the Python code protoc generates from Protos/ on PYTHONPATH."""
import os
import subprocess
import sys
import urllib.error
import urllib.request

from licensed.v1 import protocol_pb2
from wire import Checks, Connection, exit_on_sigterm, stop_daemon, wait_for_port

licensed, licensectl, config, port, metrics_port, token, timestamp_file, libfaketime = sys.argv[1:9]
port, metrics_port = int(port), int(metrics_port)
DAY_MS = 86_400_000
work = os.path.dirname(config)
check = Checks()
exit_on_sigterm()


def start(offset, name):
    """Starts the daemon with its wall clock at real time plus `offset` (libfaketime: -3d, -1h)."""
    with open(timestamp_file, "w") as f:
        f.write(offset + "\n")
    log = open(os.path.join(work, f"daemon-{name}.log"), "wb")
    environment = dict(os.environ, LD_PRELOAD=libfaketime, FAKETIME_TIMESTAMP_FILE=timestamp_file, FAKETIME_NO_CACHE="1",
                       FAKETIME_DONT_FAKE_MONOTONIC="1", DONT_FAKE_MONOTONIC="1")
    # Through sh's exec: see clock_test.py.
    daemon = subprocess.Popen(["/bin/sh", "-c", 'exec "$0" "$@"', licensed, "--config", config], stdout=log, stderr=log, env=environment)
    # Both listeners: the operator one (/readyz, /metrics) may come up a moment after the protocol's.
    if not wait_for_port(port) or not wait_for_port(metrics_port):
        print(open(log.name, "rb").read().decode(errors="replace")[-2000:])
        raise SystemExit(f"the daemon did not start at {offset}")
    return daemon, log


def checkout(feature, user="ada"):
    """(code name or "granted", message) of a check-out and a check-in of `feature`."""
    conn = Connection(port, user=user)
    message = protocol_pb2.ClientMessage()
    message.check_out.feature = feature
    reply = conn.call(message)
    conn.close()
    if reply.WhichOneof("body") == "check_out":
        return "granted", ""
    return protocol_pb2.Error.Code.Name(reply.error.code), reply.error.message


def readyz():
    try:
        response = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5)
        return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def status_text():
    return subprocess.run([licensectl, "status", "--server", f"127.0.0.1:{port}", "--token", token],
                          capture_output=True, text=True, timeout=30).stdout


# 1. Real time: everything serves; the state records the time.
daemon, log = start("+0", "real")
check(checkout("dated.tool") == ("granted", ""), "at real time the dated licence grants")
check(checkout("cad") == ("granted", ""), "at real time the perpetual licence grants")
real_log = stop_daemon(daemon, log)
check("old" in real_log and "expired" in real_log, "at real time the licence that expired 30 days ago is rejected at load")

# 2. Three days back.
daemon, log = start("-3d", "3-days-back")
code, message = checkout("dated.tool")
check(code == "CLOCK_SETBACK", f"3 days back: the dated licence is refused with CLOCK_SETBACK ({code})")
check("3 days" in message and "behind" in message and "set right" in message, f"... naming about 3 days and the fix: {message}")
check(checkout("cad") == ("granted", ""), "3 days back: the perpetual licence still grants")
ready, body = readyz()
check(ready == 200 and "clock setback" in body and "3 days" in body, f"/readyz: ready for the perpetual licence, the setback in its body ({ready}: {body.strip()})")
check(metric("licensed_clock_setback_episodes_total") == 1, "/metrics: one clock-setback episode")
seconds = metric("licensed_clock_setback_seconds")
check(seconds is not None and 3 * 86400 - 60 < seconds < 3 * 86400 + 600, f"/metrics: licensed_clock_setback_seconds about 3 days ({seconds})")
text = status_text()
check("CLOCK SETBACK" in text and "3 days" in text and "CLOCK_SETBACK" in text, "licensectl status shows the setback and the licence's state")
back_log = stop_daemon(daemon, log)
check(back_log.count("clock setback:") == 1, f"the episode is logged once ({back_log.count('clock setback:')})")
audit = subprocess.run([licensectl, "audit", "export", "--dir", os.path.join(work, "state", "audit"), "--format", "json"],
                       capture_output=True, text=True, timeout=30)
check('"clock_setback"' in audit.stdout, "the audit trail holds the clock_setback record" + ("" if audit.returncode == 0 else f" ({audit.stderr.strip()})"))

# 3. One hour back: inside the tolerance, nothing changes.
daemon, log = start("-1h", "1-hour-back")
check(checkout("dated.tool") == ("granted", ""), "1 hour back (inside the 24-hour tolerance): the dated licence grants")
check(readyz()[1].startswith("ready:"), "1 hour back: /readyz is plainly ready")
check(metric("licensed_clock_setback_episodes_total") == 0, "1 hour back: no episode")
stop_daemon(daemon, log)

# 4. Real time again: it serves.
daemon, log = start("+0", "real-again")
check(checkout("dated.tool") == ("granted", ""), "restarted at real time: the dated licence grants again")
stop_daemon(daemon, log)

# 5. Sixty days back: the licence that expired 30 days ago loads (its date has not come on this
# clock), but the state holds later times.
daemon, log = start("-60d", "60-days-back")
code, message = checkout("old.tool")
check(code == "CLOCK_SETBACK" and "60 days" in message, f"60 days back: the licence that expired 30 days ago is not made valid ({code}: {message})")
stop_daemon(daemon, log)

check.finish("setback")
