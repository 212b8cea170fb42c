"""Crash test: kill -9 the daemon at random moments while clients check seats out and in, restart
it, and check the history: every acknowledged grant is still held after recovery (unless a
check-in for it was sent), and seats in use never exceed capacity.

Every third kill (or the next after it that can) is also a power cut for the audit file: its
newest file loses a tail that only the write-ahead log holds (the lines written after the log's
fdatasync, not yet synced), which the next start must copy back from the log, byte for byte.

Then: kill -9 during snapshots (asked for, with thousands of leases held so that writing one takes
a while); a clean stop followed by one flipped byte in the newest snapshot (recovery must use the
older snapshot and the log and lose nothing); and the same with the older snapshots removed too
(start-up must refuse with exit 65, naming the file, and serve nothing).

Usage: crash_test.py LICENSED_BINARY CONFIG PORT ADMIN_TOKEN CAPACITY KILLS SEED SNAPSHOT_KILLS
Needs the Python code protoc generates from Protos/ on PYTHONPATH."""
import glob
import os
import random
import signal
import subprocess
import sys
import threading
import time

from licensed.v1 import protocol_pb2, store_pb2
from wire import Checks, Connection as WireConnection, wait_for_port

binary, config, port, token, capacity, kills, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
snapshot_kills = int(sys.argv[8])
ledger_dir = os.path.join(os.path.dirname(config), "state", "ledger")
daemon_log = os.path.join(os.path.dirname(config), "daemon.log")
BULK_SESSIONS, BULK_PER_SESSION = 5, 1000
rng = random.Random(seed)
lock = threading.Lock()
acked_grants = {}          # lease id -> time acknowledged
checkins_sent = set()      # lease ids a check-in was sent for (acknowledged or not)
replayed = 0
stop = threading.Event()
check = Checks(quiet=True)


def Connection(resume=b"", tok=""):
    return WireConnection(port, user="crash", resume=resume, tok=tok, client_name="crash-test")


def client(index):
    global replayed
    local = random.Random(seed * 100 + index)
    held = []
    session = b""
    pending_key = None
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = Connection(resume=session)
                session = conn.session
            if pending_key is not None or not held or local.random() < 0.6:
                # Check out; a request cut off by a crash is retried with the same key.
                key = pending_key or os.urandom(16)
                pending_key = key
                message = protocol_pb2.ClientMessage()
                message.check_out.feature = "cad.solver"
                message.check_out.checkout_key = key
                reply = conn.call(message)
                pending_key = None
                if reply.WhichOneof("body") == "check_out":
                    lease = reply.check_out.lease_id
                    with lock:
                        acked_grants.setdefault(lease, time.time())
                        if reply.check_out.replayed:
                            replayed += 1
                    if lease not in held:
                        held.append(lease)
                else:
                    time.sleep(0.01)
            else:
                lease = held.pop(local.randrange(len(held)))
                with lock:
                    checkins_sent.add(lease)
                message = protocol_pb2.ClientMessage()
                message.check_in.lease_id = lease
                conn.call(message)
        except (OSError, ConnectionError):
            if conn:
                conn.close()
            conn = None
            time.sleep(0.05)
    if conn:
        conn.close()


def bulk_hold():
    """Pipelined check-outs of the `bulk` feature from a few sessions that then go away: leases
    enough that a snapshot takes a while to write. Each acknowledged one joins the history."""
    for _ in range(BULK_SESSIONS):
        conn = Connection()
        for _ in range(BULK_PER_SESSION):
            message = protocol_pb2.ClientMessage()
            message.check_out.feature = "bulk"
            message.check_out.checkout_key = os.urandom(16)
            conn.send(message)
        answered = 0
        while answered < BULK_PER_SESSION:
            reply = conn.read_reply()
            if reply.request_id == 0:
                continue
            answered += 1
            if reply.WhichOneof("body") == "check_out":
                with lock:
                    acked_grants.setdefault(reply.check_out.lease_id, time.time())
        conn.close()


def start_daemon():
    log = open(daemon_log, "ab")
    process = subprocess.Popen([binary, "--config", config], stdout=log, stderr=log)
    if not wait_for_port(port):
        raise SystemExit("daemon did not start")
    return process


def verify(label):
    with lock:
        grants_before = dict(acked_grants)
    conn = Connection(tok=token)
    message = protocol_pb2.ClientMessage()
    message.status.include_holders = True
    reply = conn.call(message)
    conn.close()
    with lock:
        sent = set(checkins_sent)
    live = {h.lease_id for f in reply.status.features for h in f.holders}
    in_use = sum(f.in_use for f in reply.status.features if f.feature == "cad.solver")
    missing = [lease.hex() for lease in grants_before if lease not in live and lease not in sent]
    check(not missing, f"{label}: {len(missing)} acknowledged grants lost: {missing[:5]}")
    check(in_use <= capacity, f"{label}: {in_use} seats in use, capacity {capacity}")
    return len(live), in_use


def snapshots():
    return sorted(glob.glob(os.path.join(ledger_dir, "snapshot-*.snap")))


def flip_byte(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))


def audit_lines_in_log():
    """The sequence numbers of the audit records the write-ahead log carries (WalRecord.audit_lines)."""
    sequences = set()
    for path in glob.glob(os.path.join(ledger_dir, "wal-*.log")):
        data = open(path, "rb").read()
        offset = 0
        while offset + 16 <= len(data):
            length = int.from_bytes(data[offset:offset + 4], "big")
            body = data[offset + 16:offset + 16 + length]
            if len(body) < length or length == 0:
                break  # a torn tail, or zeros: the space the writer allocated ahead
            record = store_pb2.WalRecord()
            record.ParseFromString(body)
            if record.HasField("audit_lines"):
                first = record.audit_lines.first_sequence
                sequences.update(range(first, first + record.audit_lines.count))
            offset += 16 + length
    return sequences


def record_sequence(line):
    """The sequence number of one line of the audit trail: a JSON line, or a compact record (0xC1,
    then the sequence as a varint; 0x1B escapes 0x0A as 0x1B 0x6E and itself as 0x1B 0x65)."""
    if line[:1] == b"{":
        return int(line[7:line.index(b",")])
    value, shift, index = 0, 0, 1
    while True:
        byte = line[index]
        index += 1
        if byte == 0x1B:
            byte = {0x6E: 0x0A, 0x65: 0x1B}[line[index]]
            index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value


def audit_files():
    """The trail's uncompressed files, oldest first (compact `.rec` or JSON lines `.jsonl`)."""
    files = glob.glob(os.path.join(audit_dir, "audit-*.rec")) + glob.glob(os.path.join(audit_dir, "audit-*.jsonl"))
    return sorted(files, key=lambda p: int(os.path.basename(p)[6:].split(".")[0]))


def cut_audit_tail():
    """A power cut after kill -9: the newest audit file loses a tail that only the log holds (the
    lines written after the log's fdatasync and not yet synced). Returns the file and its bytes."""
    files = audit_files()
    newest = files[-1]
    data = open(newest, "rb").read()
    if not data.endswith(b"\n"):
        return None
    in_log = audit_lines_in_log()
    starts = [0] + [i + 1 for i, b in enumerate(data) if b == 0x0A][:-1]
    cuttable = []
    for start in reversed(starts):
        line = data[start:data.index(b"\n", start)]
        if record_sequence(line) not in in_log:
            break
        cuttable.append(start)
    if not cuttable:
        return None
    cut = rng.choice(cuttable) + rng.choice([0, 0, 9])
    with open(newest, "r+b") as f:
        f.truncate(min(cut, len(data)))
    return newest, data, len(data) - cut


def log_text():
    with open(daemon_log, "rb") as f:
        return f.read().decode(errors="replace")


audit_dir = os.path.join(os.path.dirname(config), "state", "audit")
daemon = start_daemon()
bulk_hold()
cuts, want_cut = 0, False
threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
for t in threads:
    t.start()
for n in range(1, kills + 1):
    time.sleep(rng.uniform(0.2, 1.0))
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    # A kill that finds the audit file ending in records only it holds (a denial, synced
    # there) cannot lose them to a power cut: the cut waits for the next kill.
    want_cut = want_cut or n % 3 == 0
    cut = cut_audit_tail() if want_cut else None
    want_cut = want_cut and cut is None
    restored_before = log_text().count("copied back from the log")
    daemon = start_daemon()
    if cut:
        path, before, lost = cut
        check(open(path, "rb").read().startswith(before), f"after kill {n} and a power cut: the audit file got back its {lost} lost bytes from the log")
        check(log_text().count("copied back from the log") == restored_before + 1, f"after kill {n}: the restore is reported")
        cuts += 1
    live, in_use = verify(f"after kill {n}")
    print(f"kill {n}: restarted, {live} leases live, {in_use} in use, {len(acked_grants)} grants acknowledged so far", flush=True)
# kill -9 while a snapshot is being written: one is timed first, then each is asked for and the
# daemon killed at a random moment within 1.5 times that, with the clients running.
admin = Connection(tok=token)
message = protocol_pb2.ClientMessage()
message.snapshot.SetInParent()
timed = admin.call(message).snapshot
admin.close()
window = max(0.005, 1.5 * (timed.duration_ms / 1000.0))
print(f"a snapshot of {timed.size_bytes} bytes took {timed.duration_ms} ms; kills within {window * 1000:.0f} ms of asking", flush=True)
interrupted = 0
for n in range(1, snapshot_kills + 1):
    written_before = log_text().count("snapshot written")
    admin = Connection(tok=token)
    message = protocol_pb2.ClientMessage()
    message.snapshot.SetInParent()
    admin.send(message)
    time.sleep(rng.uniform(0.0, window))
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    admin.close()
    if log_text().count("snapshot written") == written_before:
        interrupted += 1
    daemon = start_daemon()
    live, _ = verify(f"after kill {n} during a snapshot")
    print(f"snapshot kill {n}: restarted, {live} leases live", flush=True)
check(not glob.glob(os.path.join(ledger_dir, "*.tmp")), "no half-written snapshot is left behind")
print(f"{interrupted} of {snapshot_kills} kills landed before the snapshot was complete", flush=True)
check(snapshot_kills == 0 or interrupted > 0, "some kills interrupted a snapshot")
stop.set()
for t in threads:
    t.join()
# A graceful stop snapshots; recovery from the snapshot must hold the same.
live_before, _ = verify("before SIGTERM")
daemon.send_signal(signal.SIGTERM)
check(daemon.wait(timeout=30) == 0, "SIGTERM exit code 0")
daemon = start_daemon()
live_after, _ = verify("after SIGTERM and restart from the snapshot")
check(live_after == live_before, f"leases after snapshot recovery: {live_after} vs {live_before}")

# A clean stop, then one byte of the newest snapshot flipped: the older snapshot and the log hold it all.
daemon.send_signal(signal.SIGTERM)
check(daemon.wait(timeout=30) == 0, "SIGTERM exit code 0")
kept = snapshots()
check(len(kept) == 2, f"two snapshots kept after a clean stop: {kept}")
flip_byte(kept[-1])
daemon = start_daemon()
live_after, _ = verify("after a clean stop and a damaged newest snapshot")
check(live_after == live_before, f"leases recovered from the older snapshot and the log: {live_after} vs {live_before}")
check(os.path.basename(kept[-1]) in log_text() and "fails its checksum" in log_text(), "the log names the damaged snapshot")
check(os.path.exists(kept[-1] + ".damaged"), "the damaged snapshot is kept aside for the operator")

# A damaged older snapshot: not needed, reported, and replaced by a fresh one; nothing lost.
daemon.send_signal(signal.SIGTERM)
check(daemon.wait(timeout=30) == 0, "SIGTERM exit code 0")
kept = snapshots()
check(len(kept) == 2, f"two snapshots kept: {kept}")
flip_byte(kept[0])
daemon = start_daemon()
live_after, _ = verify("after a clean stop and a damaged older snapshot")
check(live_after == live_before, f"leases recovered from the newest snapshot: {live_after} vs {live_before}")
check(os.path.basename(kept[0]) in log_text() and "not needed this time" in log_text(), "the log names the damaged older snapshot")
check(len(snapshots()) == 2 and kept[0] not in snapshots(), "a fresh snapshot replaced it before serving")

# The same with the older snapshots gone too: nothing covers what was acknowledged.
daemon.send_signal(signal.SIGTERM)
check(daemon.wait(timeout=30) == 0, "SIGTERM exit code 0")
kept = snapshots()
flip_byte(kept[-1])
for older in kept[:-1]:
    os.remove(older)
refused = subprocess.run([binary, "--config", config], capture_output=True, timeout=60)
stderr = refused.stderr.decode(errors="replace")
check(refused.returncode == 65, f"start-up refused with exit 65 (got {refused.returncode})")
check(os.path.basename(kept[-1]) in stderr and "would be lost" in stderr, f"... naming the damaged snapshot and what would be lost: {stderr[-400:]}")
check("listening" not in stderr, "... and nothing was served")
# The operator's explicit decision: --accept-data-loss starts, says what was lost, and audits it.
daemon = subprocess.Popen([binary, "--config", config, "--accept-data-loss"], stdout=open(daemon_log, "ab"), stderr=subprocess.STDOUT)
check(wait_for_port(port) and "started with --accept-data-loss" in log_text(), "--accept-data-loss starts and logs what was lost")
daemon.send_signal(signal.SIGTERM)
check(daemon.wait(timeout=30) == 0, "... and stops cleanly")
audit_bytes = b"".join(open(path, "rb").read() for path in audit_files())
check(b"data_loss_accepted" in audit_bytes, "... and the start is audited with what was lost")
restarted = start_daemon()
check(restarted.poll() is None, "the next start, without the flag, is clean")
restarted.send_signal(signal.SIGTERM)
restarted.wait(timeout=30)
check(len(acked_grants) > kills, f"the clients made progress: {len(acked_grants)} grants")
check(kills < 3 or cuts > 0, f"power cuts took audit tails that the log held: {cuts}")
verified = subprocess.run([os.path.join(os.path.dirname(binary), "licensectl"), "audit", "verify", "--dir", audit_dir], capture_output=True, timeout=120)
check(verified.returncode == 0, f"the audit trail verifies after every kill and power cut: {verified.stdout.decode(errors='replace')[-300:]}{verified.stderr.decode(errors='replace')[-300:]}")
print(f"{len(acked_grants)} grants acknowledged, {len(checkins_sent)} check-ins sent, {replayed} replayed retries across {kills} kills")
check.finish("crash")
