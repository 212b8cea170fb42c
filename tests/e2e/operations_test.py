"""Operations end to end: the daemon under a NOTIFY_SOCKET this test bound itself (READY=1,
WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM),
/readyz failing while no licence is valid, and /metrics after real check-outs.

Usage: operations_test.py LICENSED WORKDIR BAD_LICENSE GOOD_LICENSE ISSUER_PUB
Needs the Python code protoc generates from Protos/ on PYTHONPATH."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from licensed.v1 import protocol_pb2
from wire import Checks

licensed, work, bad_license, good_license, issuer_pub = sys.argv[1:6]
check = Checks()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# The notify socket, bound by the test as systemd would.
notify_path = os.path.join(work, "notify.sock")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
messages = []  # (monotonic time, message)
lock = threading.Lock()


def listen():
    while True:
        try:
            data = notify.recv(4096)
        except OSError:
            return
        with lock:
            messages.append((time.monotonic(), data.decode()))


threading.Thread(target=listen, daemon=True).start()


def wait_message(predicate, timeout, start=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with lock:
            for i, (t, m) in enumerate(messages[start:], start):
                if predicate(m):
                    return i
        time.sleep(0.02)
    return None


license_path = os.path.join(work, "served.lic")
shutil.copy(bad_license, license_path)
port, metrics_port = free_port(), free_port()
config = os.path.join(work, "ops.yaml")
with open(config, "w") as f:
    f.write(f"""listen_host: 127.0.0.1
port: {port}
state_dir: {work}/ops-state
license_paths: [{license_path}]
trusted_keys: [{{id: acme, public_key: {issuer_pub}}}]
metrics_listen: 127.0.0.1:{metrics_port}
admin_socket: {work}/ops-admin.sock
""")
env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="1000000")
env.pop("WATCHDOG_PID", None)
log = open(os.path.join(work, "ops-daemon.log"), "wb")
daemon = subprocess.Popen([licensed, "--config", config], env=env, stdout=log, stderr=log)


def http(path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


ready_index = wait_message(lambda m: "READY=1" in m, 30)
check(ready_index is not None, "READY=1 once the listener is bound")
with lock:
    first = messages[0][1] if messages else ""
check("READY=1" in first or first.startswith("WATCHDOG=1"), f"nothing before READY=1 but watchdog pings (first: {first!r})")
status, body = http("/readyz")
check(status == 503 and "no valid licence" in body, f"/readyz is 503 while no licence is valid ({status} {body.strip()})")
status, body = http("/healthz")
check(status == 200, f"/healthz is 200 ({status})")

# Watchdog pings at half of WATCHDOG_USEC (1 s): about every 0.5 s.
time.sleep(2.2)
with lock:
    pings = [t for t, m in messages if "WATCHDOG=1" in m]
gaps = [b - a for a, b in zip(pings, pings[1:])]
check(len(pings) >= 4, f"WATCHDOG=1 pings: {len(pings)} in about 2 s")
check(gaps and all(0.3 <= g <= 0.9 for g in gaps[-4:]), f"ping intervals about 0.5 s: {[round(g, 2) for g in gaps[-4:]]}")

# SIGHUP with a valid licence: RELOADING=1, then READY=1; /readyz turns 200.
shutil.copy(good_license, license_path)
with lock:
    mark = len(messages)
daemon.send_signal(signal.SIGHUP)
reloading = wait_message(lambda m: "RELOADING=1" in m, 10, mark)
ready_again = wait_message(lambda m: "READY=1" in m, 10, (reloading or mark) + 1)
check(reloading is not None, "RELOADING=1 after SIGHUP")
with lock:
    reloading_message = messages[reloading][1] if reloading is not None else ""
check("MONOTONIC_USEC=" in reloading_message, "RELOADING=1 carries MONOTONIC_USEC")
check(ready_again is not None and reloading is not None and ready_again > reloading, "READY=1 after RELOADING=1")
status, body = http("/readyz")
check(status == 200, f"/readyz is 200 once a licence is loaded ({status} {body.strip()})")


# Real check-outs over the protocol: 3 granted, 1 returned, 1 denied (unknown feature).
def call(sock, message, request_id):
    message.request_id = request_id
    body = message.SerializeToString()
    sock.sendall(struct.pack(">I", len(body)) + body)
    while True:
        (length,) = struct.unpack(">I", recv(sock, 4))
        reply = protocol_pb2.ServerMessage.FromString(recv(sock, length))
        if reply.request_id == request_id:
            return reply


def recv(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


# The same reload asked over the admin socket (`licensectl reload`): one path, the same notifications.
with lock:
    mark = len(messages)
admin = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
admin.connect(os.path.join(work, "ops-admin.sock"))
admin_hello = protocol_pb2.ClientMessage()
admin_hello.hello.protocol_version = protocol_pb2.PROTOCOL_VERSION_1
admin_hello.hello.user = "ops"
call(admin, admin_hello, 1)
reload_request = protocol_pb2.ClientMessage()
reload_request.reload.SetInParent()
reloaded = call(admin, reload_request, 2)
check(reloaded.reload.loaded == 1, f"Reload over the admin socket loads the licence ({reloaded})")
reloading = wait_message(lambda m: "RELOADING=1" in m, 10, mark)
ready_again = wait_message(lambda m: "READY=1" in m, 10, (reloading or mark) + 1)
check(reloading is not None and ready_again is not None, "RELOADING=1 then READY=1 for a reload over the admin socket")
admin.close()

sock = socket.create_connection(("127.0.0.1", port))
hello = protocol_pb2.ClientMessage()
hello.hello.protocol_version = protocol_pb2.PROTOCOL_VERSION_1
hello.hello.user = "ops"
call(sock, hello, 1)
leases = []
for i in range(3):
    m = protocol_pb2.ClientMessage()
    m.check_out.feature = "cad.solver"
    leases.append(call(sock, m, 10 + i).check_out.lease_id)
m = protocol_pb2.ClientMessage()
m.check_in.lease_id = leases[0]
call(sock, m, 20)
m = protocol_pb2.ClientMessage()
m.check_out.feature = "no.such.feature"
denied = call(sock, m, 21)
check(denied.error.code == protocol_pb2.Error.NOT_FOUND, "the unknown feature is denied")

status, text = http("/metrics")
check(status == 200, "/metrics answers")
values = {}
for line in text.splitlines():
    if line and not line.startswith("#"):
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
expect = {
    'licensed_seats_total{feature="cad.solver"}': 5,
    'licensed_seats_in_use{feature="cad.solver"}': 2,
    'licensed_checkouts_total{feature="cad.solver"}': 3,
    'licensed_checkins_total{feature="cad.solver"}': 1,
    'licensed_denials_total{feature="no.such.feature",reason="NOT_FOUND"}': 1,
    'licensed_licenses_loaded': 1,
    'licensed_sessions': 1,
    'licensed_ready': 1,
}
for name, value in expect.items():
    check(values.get(name) == value, f"{name} = {values.get(name)} (expected {value})")
check(values.get("licensed_wal_sync_seconds_count", 0) >= 1, f"WAL sync latency histogram has samples ({values.get('licensed_wal_sync_seconds_count')})")
check(any(k.startswith("licensed_license_expiry_timestamp_seconds") for k in values), "licence expiry timestamp gauge present")
sock.close()

with lock:
    mark = len(messages)
daemon.send_signal(signal.SIGTERM)
stopping = wait_message(lambda m: "STOPPING=1" in m, 10, mark)
check(stopping is not None, "STOPPING=1 after SIGTERM")
check(daemon.wait(timeout=30) == 0, "exit code 0 after SIGTERM")
check.finish("operations")
