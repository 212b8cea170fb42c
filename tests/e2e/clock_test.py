"""Wall-clock steps under a running daemon (libfaketime moves CLOCK_REALTIME; the monotonic clock is
left alone): a step of +2 h with a live, heartbeating holder and a holder that went away reclaims
nothing; a step of -2 days after it does not pin the abandoned seat: it is reclaimed one TTL after
its grant, as if no step had happened. Each step is logged once and counted in /metrics.

Usage: clock_test.py LICENSED CONFIG PORT METRICS_PORT ADMIN_TOKEN TIMESTAMP_FILE LIBFAKETIME
Needs the Python code protoc generates from Protos/ on PYTHONPATH."""
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from licensed.v1 import protocol_pb2
from wire import Checks, Connection, exit_on_sigterm, stop_daemon, wait_for_port

licensed, config, port, metrics_port, token, timestamp_file, libfaketime = sys.argv[1:8]
port, metrics_port = int(port), int(metrics_port)
TTL_S = 10.0
check = Checks()
exit_on_sigterm()


def set_offset(offset):
    """The daemon's wall clock: real time plus `offset` (libfaketime's syntax: +2h, -2d)."""
    with open(timestamp_file + ".new", "w") as f:
        f.write(offset + "\n")
    os.replace(timestamp_file + ".new", timestamp_file)


def holders():
    conn = Connection(port, tok=token)
    message = protocol_pb2.ClientMessage()
    message.status.include_holders = True
    reply = conn.call(message)
    conn.close()
    return {h.lease_id: f.feature for f in reply.status.features for h in f.holders}


def steps(direction):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f'licensed_clock_steps_total{{direction="{direction}"}}'):
            return float(line.split()[-1])
    return None


def checkout(conn, feature):
    message = protocol_pb2.ClientMessage()
    message.check_out.feature = feature
    reply = conn.call(message)
    assert reply.WhichOneof("body") == "check_out", reply
    return reply.check_out.lease_id


set_offset("+0")
log_path = os.path.join(os.path.dirname(config), "clock-daemon.log")
log = open(log_path, "wb")
environment = dict(
    os.environ,
    LD_PRELOAD=libfaketime,
    FAKETIME_TIMESTAMP_FILE=timestamp_file,
    FAKETIME_NO_CACHE="1",
    FAKETIME_DONT_FAKE_MONOTONIC="1",
    DONT_FAKE_MONOTONIC="1",
)
# Started through sh's exec: spawned straight from Python with libfaketime preloaded, the Swift
# runtime saw an empty command line (seen with libfaketime 0.9.10).
daemon = subprocess.Popen(["/bin/sh", "-c", 'exec "$0" "$@"', licensed, "--config", config], stdout=log, stderr=log, env=environment)
try:
    check(wait_for_port(port), "the daemon starts under libfaketime")
    # The metrics listener binds on its own, after the protocol's: a slow start refused the first
    # /metrics request once (clean-clone CI of 152d4fa).
    check(wait_for_port(metrics_port), "... and its metrics listener")

    # A live holder heartbeating every second, and one that checks out and goes away.
    live = Connection(port, user="live")
    live_lease = checkout(live, "cad")
    stop = threading.Event()
    beats = []

    def heartbeat():
        while not stop.wait(1.0):
            message = protocol_pb2.ClientMessage()
            message.heartbeat.SetInParent()
            beats.append(live.call(message).heartbeat.renewed)

    beater = threading.Thread(target=heartbeat, daemon=True)
    beater.start()
    gone = Connection(port, user="gone")
    granted = time.monotonic()
    gone_lease = checkout(gone, "cam")
    gone.close()
    check(steps("forward") == 0 and steps("backward") == 0, "no clock step counted before any step")

    time.sleep(1.0)
    set_offset("+2h")
    time.sleep(2.0)
    held = holders()
    check(live_lease in held, "+2 h: the heartbeating holder keeps its seat")
    check(gone_lease in held, "+2 h: the seat within its TTL is not reclaimed early")
    check(steps("forward") == 1, f"+2 h: counted once in /metrics ({steps('forward')})")

    set_offset("-2d")
    time.sleep(max(0.0, granted + TTL_S - 1.5 - time.monotonic()))
    check(gone_lease in holders(), "-2 days: the abandoned seat is held until one TTL after its grant")
    time.sleep(max(0.0, granted + TTL_S + 2.0 - time.monotonic()))
    held = holders()
    check(gone_lease not in held, "-2 days: ... and reclaimed one TTL after it, not two days later")
    check(live_lease in held, "-2 days: the heartbeating holder keeps its seat")
    check(steps("backward") == 1, f"-2 days: counted once in /metrics ({steps('backward')})")
    check(all(beats) and len(beats) >= 8, f"every heartbeat renewed the lease ({len(beats)} beats)")
    stop.set()
    beater.join()
    live.close()
finally:
    stop_daemon(daemon, log)

text = open(log_path, "rb").read().decode(errors="replace")
forward = text.count("wall clock stepped forward")
backward = text.count("wall clock stepped back ")
check(forward == 1, f"the step forward is logged once ({forward})")
check(backward == 1, f"the step back is logged once ({backward})")
if check.failed:
    print(text[-3000:])
check.finish("clock")
