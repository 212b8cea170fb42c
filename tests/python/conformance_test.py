"""The protocol's conformance suite: an independent Python client (protoc --python_out and Debian's
python3-protobuf; its own framing over a raw socket; no code shared with the server) that drives a
running daemon through every request type and every error code, then reads the daemon's
write-ahead log, snapshot and licence file with the same generated code. At the end a check reads
the descriptors of Protos/ and fails if any message type or error code was not used.

Run by scripts/test-python, which starts the daemon; environment: PORT, STATE_DIR, LICENSE_FILE,
SERVER_PUBKEY_DIR (scratch), and TOKEN_ADMIN, TOKEN_OPERATOR, TOKEN_AUDITOR, TOKEN_CLIENT."""
import base64
import glob
import os
import socket
import struct
import subprocess
import sys
import time

from licensed.v1 import activation_pb2, admin_pb2, floating_pb2, license_pb2, protocol_pb2, store_pb2

MODULES = (activation_pb2, admin_pb2, floating_pb2, license_pb2, protocol_pb2, store_pb2)
PORT = int(os.environ["PORT"])
STATE = os.environ["STATE_DIR"]
SCRATCH = os.environ["SCRATCH_DIR"]
TOKENS = {role: os.environ["TOKEN_" + role.upper()] for role in ("admin", "operator", "auditor", "client")}
Code = protocol_pb2.Error

checks = failures = 0
used_messages = set()
server_codes = set()


def check(condition, what):
    global checks, failures
    checks += 1
    if condition:
        print("ok   -", what)
    else:
        failures += 1
        print("FAIL -", what)


def note(message):
    """Records the message's type and every message set inside it, for the coverage check."""
    used_messages.add(message.DESCRIPTOR.full_name)
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            values = value.values() if field.message_type.fields_by_name["value"].type == field.TYPE_MESSAGE else []
        elif field.label == field.LABEL_REPEATED:
            values = value
        else:
            values = [value]
        for item in values:
            note(item)
    return message


class ServerError(Exception):
    def __init__(self, error):
        super().__init__(f"{Code.Code.Name(error.code)}: {error.message}")
        self.code = error.code
        self.message = error.message


class Connection:
    """One connection: frames are a 4-byte big-endian length and a ClientMessage / ServerMessage."""

    def __init__(self, token="", user="py", host="py-host", version="1.0", hello=True, resume=b"", attempt=0):
        self.sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        self.next_id = 1
        self.events = []
        self.buffer = b""
        if hello:
            h = protocol_pb2.Hello(protocol_version=protocol_pb2.PROTOCOL_VERSION_1, client_name="conformance", client_version=version,
                                   user=user, host=host, token=token, resume_session_id=resume, resume_attempt=attempt,
                                   pid=os.getpid())
            self.hello = self.call("hello", h)

    def send_frame(self, body):
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def send(self, field, request):
        request_id = self.next_id
        self.next_id += 1
        message = protocol_pb2.ClientMessage(request_id=request_id)
        getattr(message, field).CopyFrom(note(request))
        self.send_frame(note(message).SerializeToString())
        return request_id

    def read_exact(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self):
        (length,) = struct.unpack(">I", self.read_exact(4))
        message = note(protocol_pb2.ServerMessage.FromString(self.read_exact(length)))
        if message.WhichOneof("body") == "error":
            server_codes.add(message.error.code)
        return message

    def reply(self, request_id):
        while True:
            message = self.receive()
            if message.request_id == request_id:
                if message.WhichOneof("body") == "error":
                    raise ServerError(message.error)
                return message
            if message.WhichOneof("body") == "event":
                self.events.append(message.event)

    def call(self, field, request):
        reply = self.reply(self.send(field, request))
        return getattr(reply, reply.WhichOneof("body"))

    def expect_error(self, field, request, code, what):
        try:
            self.call(field, request)
            check(False, f"{what}: expected {Code.Code.Name(code)}, got an answer")
            return None
        except ServerError as error:
            check(error.code == code, f"{what}: {Code.Code.Name(code)} ({error.message})")
            return error

    def wait_event(self, kind, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for event in self.events:
                if event.kind == kind:
                    self.events.remove(event)
                    return event
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                message = self.receive()
                if message.WhichOneof("body") == "event":
                    self.events.append(message.event)
            except socket.timeout:
                pass
        self.sock.settimeout(10)
        return None

    def close(self):
        self.sock.close()


def checkout(conn, feature, **fields):
    return conn.call("check_out", floating_pb2.CheckOutRequest(feature=feature, checkout_key=os.urandom(16), **fields))


def openssl_verify(public_key_raw, signature, data, name):
    """Verifies an Ed25519 signature with the openssl command (independent of the server's code)."""
    der = bytes.fromhex("302a300506032b6570032100") + public_key_raw
    paths = {k: os.path.join(SCRATCH, f"{name}.{k}") for k in ("pub", "sig", "dat")}
    with open(paths["pub"], "w") as f:
        f.write("-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n")
    with open(paths["sig"], "wb") as f:
        f.write(signature)
    with open(paths["dat"], "wb") as f:
        f.write(data)
    result = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths["pub"], "-rawin", "-in", paths["dat"], "-sigfile",
                             paths["sig"]], capture_output=True)
    return result.returncode == 0


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def read_wal(directory):
    """Every record of the write-ahead log segments in directory: [u32 length][u32 CRC-32C][u64 seq][WalRecord]."""
    found, good = [], True
    for path in sorted(glob.glob(os.path.join(directory, "wal-*.log"))):
        data = open(path, "rb").read()
        offset = 0
        while offset + 16 <= len(data):
            length, crc, sequence = struct.unpack(">IIQ", data[offset:offset + 16])
            if length == 0 and not data[offset:].strip(b"\0"):
                break  # zeros to the end: the space the writer allocated ahead of its records
            body = data[offset + 16:offset + 16 + length]
            good &= crc32c(data[offset + 8:offset + 16] + body) == crc
            found.append((sequence, note(store_pb2.WalRecord.FromString(body))))
            offset += 16 + length
    return found, good


def wal_frame(sequence, record):
    body = record.SerializeToString()
    head = struct.pack(">Q", sequence)
    return struct.pack(">II", len(body), crc32c(head + body)) + head + body


# ---- the session, a floating seat, heartbeats, check-in --------------------------------------
ada = Connection(TOKENS["client"], user="ada")
check(len(ada.hello.session_id) == 16 and len(ada.hello.server_public_key) == 32 and ada.hello.role == "client", "Hello: session, server key, role")
server_key = ada.hello.server_public_key
lease = checkout(ada, "cad", count=1)
check(len(lease.lease_id) == 16 and lease.license_id == "py-cad" and lease.fencing_token > 0, "CheckOut: a lease of cad from py-cad")
beat = ada.call("heartbeat", floating_pb2.HeartbeatRequest(lease_ids=[lease.lease_id]))
check(beat.renewed == 1 and not beat.lost_lease_ids, "Heartbeat renews the named lease")
status = ada.call("status", floating_pb2.StatusRequest(features=["cad"]))
cad = [f for f in status.features if f.feature == "cad"]
check(cad and cad[0].capacity == 1 and cad[0].in_use == 1, "Status: cad 1 of 1 in use")
check(any(l.license_id == "py-cad" for l in status.licenses) and status.server_public_key == server_key, "Status lists the licence and the key")
ada.expect_error("status", floating_pb2.StatusRequest(include_holders=True), Code.PERMISSION_DENIED, "a client asking for holders")
bob = Connection(TOKENS["client"], user="bob", host="bob-host")
bob.expect_error("check_out", floating_pb2.CheckOutRequest(feature="cad", checkout_key=os.urandom(16)), Code.NO_SEATS, "the second seat of a 1-seat HARD feature")
bob.expect_error("check_out", floating_pb2.CheckOutRequest(feature="cad", wait_ms=300, checkout_key=os.urandom(16)), Code.DEADLINE_EXCEEDED,
                 "a queued check-out whose wait runs out")

# The queue: bob waits, an auditor sees him waiting, ada's check-in grants him the seat.
auditor = Connection(TOKENS["auditor"], user="audrey")
waiting = bob.send("check_out", floating_pb2.CheckOutRequest(feature="cad", wait_ms=10000, checkout_key=os.urandom(16)))
time.sleep(0.2)
queue = auditor.call("queue", admin_pb2.QueueRequest(feature="cad"))
check([q.user for q in queue.queued] == ["bob"], "Queue: bob waits for cad")
checked_in = ada.call("check_in", floating_pb2.CheckInRequest(lease_id=lease.lease_id))
check(checked_in.lease_id == lease.lease_id, "CheckIn returns the lease id")
granted = bob.reply(waiting).check_out
check(granted.feature == "cad" and len(granted.lease_id) == 16, "the queued check-out is granted when the seat comes free")
ada.expect_error("check_in", floating_pb2.CheckInRequest(lease_id=lease.lease_id), Code.NOT_FOUND, "checking a lease in twice")
ada.expect_error("check_in", floating_pb2.CheckInRequest(lease_id=granted.lease_id), Code.PERMISSION_DENIED, "checking in another session's lease")

# ---- licence rules --------------------------------------------------------------------------
ada.expect_error("check_out", floating_pb2.CheckOutRequest(feature="net.tool", checkout_key=os.urandom(16)), Code.NETWORK_NOT_ALLOWED,
                 "a licence for another network")
ada.expect_error("check_out", floating_pb2.CheckOutRequest(feature="user.tool", checkout_key=os.urandom(16)), Code.USER_NOT_ALLOWED,
                 "a licence for other users")
ada.expect_error("check_out", floating_pb2.CheckOutRequest(feature="future.tool", checkout_key=os.urandom(16)), Code.NOT_YET_VALID,
                 "a licence that starts next month")
ada.expect_error("check_out", floating_pb2.CheckOutRequest(feature="ver.tool", version="2027.1", checkout_key=os.urandom(16)),
                 Code.VERSION_NOT_ALLOWED, "a client version above the feature's")
ada.expect_error("check_out", floating_pb2.CheckOutRequest(feature="addon.tool", checkout_key=os.urandom(16)), Code.BASE_REQUIRED,
                 "an add-on without its base")
base = checkout(ada, "base.tool")
addon = checkout(ada, "addon.tool")
released = ada.call("check_in", floating_pb2.CheckInRequest(lease_id=base.lease_id))
check(list(released.released_addons) == [addon.lease_id], "checking the base in releases the add-on")
ada.expect_error("check_out", floating_pb2.CheckOutRequest(checkout_key=os.urandom(16)), Code.INVALID_ARGUMENT, "a check-out without a feature")
soon_until = int(os.environ["SOON_NOT_AFTER_MS"])
time.sleep(max(0, (soon_until - time.time() * 1000) / 1000 + 0.3))
ada.expect_error("check_out", floating_pb2.CheckOutRequest(feature="soon.tool", checkout_key=os.urandom(16)), Code.LICENSE_EXPIRED,
                 "a licence that ran out while loaded")

# Limits: 3 leases per session.
carol = Connection(TOKENS["client"], user="carol")
for _ in range(3):
    checkout(carol, "many.tool")
carol.expect_error("check_out", floating_pb2.CheckOutRequest(feature="many.tool", checkout_key=os.urandom(16)), Code.RESOURCE_EXHAUSTED,
                   "a fourth lease in one session (max_leases_per_session 3)")

# Borrowing: a signed token for offline use.
ivy = Connection(TOKENS["client"], user="ivy")
borrowed = checkout(ivy, "borrow.tool", borrow_ms=3600000)
token = note(floating_pb2.BorrowToken.FromString(borrowed.borrow_token))
claims = note(floating_pb2.BorrowClaims.FromString(token.claims))
check(claims.lease_id == borrowed.lease_id and claims.feature == "borrow.tool" and claims.user == "ivy", "BorrowToken claims name the lease")
check(openssl_verify(server_key, token.signature, b"licensed.v1.borrow\0" + token.claims, "borrow"),
      "openssl verifies the borrow token over \"licensed.v1.borrow\\0\" || claims")

# ---- activations ----------------------------------------------------------------------------
dave = Connection(TOKENS["client"], user="dave", host="dave-ws")
activated = dave.call("activate", activation_pb2.ActivateRequest(license_id="py-node", fingerprint=["fp-a1", "fp-a2"], machine_name="dave-ws"))
certificate = activated.certificate
act_claims = note(activation_pb2.ActivationClaims.FromString(certificate.claims))
check(act_claims.activation_id == activated.activation_id and list(act_claims.fingerprint) == ["fp-a1", "fp-a2"], "ActivationClaims bind the fingerprint")
check(openssl_verify(server_key, certificate.signature, b"licensed.v1.activation\0" + certificate.claims, "activation"),
      "openssl verifies the activation certificate")
check(not openssl_verify(server_key, certificate.signature, b"licensed.v1.borrow\0" + certificate.claims, "activation-wrong-domain"),
      "... and not in another signature domain")
note(activation_pb2.ActivationCertificate.FromString(certificate.SerializeToString()))
validated = dave.call("validate_activation", activation_pb2.ValidateActivationRequest(activation_id=activated.activation_id,
                                                                                      fingerprint=["fp-a1", "fp-a2"]))
check(len(validated.certificate.signature) == 64, "ValidateActivation returns a fresh certificate")
dave.expect_error("activate", activation_pb2.ActivateRequest(license_id="py-node", fingerprint=["fp-b1"], machine_name="other"),
                  Code.DEVICE_LIMIT, "a second machine of one user (max_devices_per_user 1)")
erin = Connection(TOKENS["client"], user="erin", host="erin-ws")
erin.call("activate", activation_pb2.ActivateRequest(license_id="py-node", fingerprint=["fp-e1"], machine_name="erin-ws"))
frank = Connection(TOKENS["client"], user="frank", host="frank-ws")
frank.expect_error("activate", activation_pb2.ActivateRequest(license_id="py-node", fingerprint=["fp-f1"], machine_name="frank-ws"),
                   Code.ACTIVATION_LIMIT, "a third machine of a 2-activation licence")
gone = dave.call("deactivate", activation_pb2.DeactivateRequest(activation_id=activated.activation_id))
check(gone.activation_id == activated.activation_id, "Deactivate frees the activation")
# A licence for bare metal only (client_environments): a container is refused, naming what it reported.
refused = frank.expect_error("activate", activation_pb2.ActivateRequest(
    license_id="py-bare", fingerprint=["fp-f1"], machine_name="frank-ct", environment=["physical", "container"],
    environment_description="physical machine, container (docker)"), Code.ENVIRONMENT_NOT_ALLOWED, "a container on a bare-metal-only licence")
check(refused is not None and "container (docker)" in refused.message, "... the message names the environment detected")
bare = frank.call("activate", activation_pb2.ActivateRequest(license_id="py-bare", fingerprint=["fp-f1"], machine_name="frank-ws",
                                                              environment=["physical"], environment_description="physical machine"))
check(bare.activation_id != "", "... and bare metal is activated")

# ---- administration -------------------------------------------------------------------------
admin = Connection(TOKENS["admin"], user="root")
operator = Connection(TOKENS["operator"], user="ops")
auditor.expect_error("revoke", admin_pb2.RevokeRequest(user="carol"), Code.PERMISSION_DENIED, "an auditor revoking")
leases = auditor.call("leases", admin_pb2.LeasesRequest(user="carol"))
check(len(leases.leases) == 3 and all(l.holder.user == "carol" for l in leases.leases), "Leases: carol's three leases with holders")
status = auditor.call("status", floating_pb2.StatusRequest(include_holders=True))
check(status.audit_sequence > 0 and len(status.audit_hash) == 64, "Status for an auditor carries the audit head")
subscribed = auditor.call("subscribe", admin_pb2.SubscribeRequest())
check(list(subscribed.thresholds_percent) == [90, 100], "Subscribe: the thresholds")
revoked = operator.call("revoke", admin_pb2.RevokeRequest(lease_id=granted.lease_id))
check(revoked.leases == 1, "Revoke: an operator takes bob's lease")
event = bob.wait_event(protocol_pb2.Event.LEASE_REVOKED)
check(event is not None and event.lease_id == granted.lease_id, "bob receives a LEASE_REVOKED event")
operator.expect_error("revoke", admin_pb2.RevokeRequest(lease_id=granted.lease_id), Code.NOT_FOUND, "revoking it again")
operator.expect_error("revoke", admin_pb2.RevokeRequest(), Code.INVALID_ARGUMENT, "a revoke without a target")
lone = checkout(ada, "cad")  # 1 of 1: crosses 90% and 100%
threshold = auditor.wait_event(protocol_pb2.Event.THRESHOLD_CROSSED)
check(threshold is not None and threshold.feature == "cad", "the subscribed auditor is told cad crossed a threshold")
reloaded = operator.call("reload", admin_pb2.ReloadRequest())
check(reloaded.loaded >= 10, f"Reload: {reloaded.loaded} licences loaded again, leases kept")
check(ada.wait_event(protocol_pb2.Event.LICENSES_RELOADED) is not None, "sessions are told the licences were reloaded")
assigned = admin.call("assign", admin_pb2.AssignRequest(part="py-node", rows=[admin_pb2.DeviceRow(row=1, device_id="DEV-1"),
                                                                              admin_pb2.DeviceRow(row=2)]))
check(assigned.run.results[0].applied and not assigned.run.results[1].applied, "Assign: one row applied, the empty row refused")
activations = auditor.call("activations", admin_pb2.ActivationsRequest())
check(any(a.machine_name == "erin-ws" for a in activations.activations), "Activations lists erin's machine")
history = auditor.call("history", admin_pb2.HistoryRequest())
check(len(history.runs) == 1 and history.runs[0].part == "py-node", "History: the assignment run")
# Air-gapped activation: an operator fulfils an offline machine's request, and later its return.
Offline = activation_pb2.OfflineRequest
offline = Offline(action=Offline.ACTIVATE, request_id="py-offline-1", created_at_ms=int(time.time() * 1000),
                  activate=activation_pb2.ActivateRequest(license_id="py-bare", fingerprint=["fp-o1", "fp-o2"], machine_name="lab-pc",
                                                          user="lab", environment=["physical"]))
auditor.expect_error("fulfil", activation_pb2.FulfilRequest(request=offline), Code.PERMISSION_DENIED, "an auditor fulfilling an offline request")
fulfilled = operator.call("fulfil", activation_pb2.FulfilRequest(request=offline))
offline_cert = fulfilled.activation.certificate
check(fulfilled.activation.server_public_key == server_key
      and openssl_verify(server_key, offline_cert.signature, b"licensed.v1.activation\0" + offline_cert.claims, "offline"),
      "Fulfil: an OfflineActivation whose certificate openssl verifies with the server key it carries")
offline_claims = note(activation_pb2.ActivationClaims.FromString(offline_cert.claims))
check(list(offline_claims.fingerprint) == ["fp-o1", "fp-o2"] and offline_claims.activation_id == fulfilled.activation.activation_id,
      "... bound to the offline machine's fingerprint")
note(activation_pb2.OfflineActivation.FromString(fulfilled.activation.SerializeToString()))
offline_id = fulfilled.activation.activation_id
operator.expect_error("fulfil", activation_pb2.FulfilRequest(request=Offline(action=Offline.RETURN, activation_id=offline_id, fingerprint=["fp-x"])),
                      Code.PERMISSION_DENIED, "a return whose fingerprint is another machine's")
returned = operator.call("fulfil", activation_pb2.FulfilRequest(request=Offline(action=Offline.RETURN, activation_id=offline_id,
                                                                                fingerprint=["fp-o1", "fp-o2"])))
check(returned.deactivated_activation_id == offline_id, "Fulfil of a return frees the activation")
# The directory (slapd, started by scripts/test-python): the tree in Status, cost centres from it,
# a leaver disabled in slapd — listed by a dry run, its lease revoked by a sync, then refused —
# and the role a sync needs.
deadline = time.time() + 10
while time.time() < deadline:
    directory = auditor.call("status", floating_pb2.StatusRequest(features=["-"])).directory
    if directory.users == 2:
        break
    time.sleep(0.1)
check(directory.configured and directory.users == 2 and directory.units == 2 and directory.disabled == 0 and directory.source.startswith("ldap://"),
      f"Status: the directory's tree (2 users, 2 units, from {directory.source})")
staff = Connection(TOKENS["client"], user="py-staff", host="staff-ws")
check(checkout(staff, "cc.tool").license_id == "py-cc", "a user of cost centre CC-7 (from the directory) gets the CC-7 licence")
outsider = Connection(TOKENS["client"], user="jo-outside", host="jo-ws")
refused = outsider.expect_error("check_out", floating_pb2.CheckOutRequest(feature="cc.tool"), Code.USER_NOT_ALLOWED,
                                "a user in no cost centre is refused the CC-7 licence")
check(refused is not None and "cost centre" in refused.message, "... the refusal names the dimension")
outsider.close()
leaver_conn = Connection(TOKENS["client"], user="py-leaver", host="leaver-ws")
leaver_lease = checkout(leaver_conn, "cc.tool")
subprocess.run(["ldapmodify", "-x", "-H", os.environ["SLAPD_URL"], "-D", os.environ["SLAPD_ADMIN"], "-w", "directory-secret"],
               input=f"dn: uid=py-leaver,ou=Staff,o=Conformance\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n",
               text=True, check=True, capture_output=True)
auditor.expect_error("directory_sync", admin_pb2.DirectorySyncRequest(dry_run=True), Code.PERMISSION_DENIED, "an auditor asking for a directory sync")
dry = operator.call("directory_sync", admin_pb2.DirectorySyncRequest(dry_run=True))
leaver = [r for r in dry.reclaimed if r.user == "py-leaver"]
check(dry.dry_run and dry.directory.disabled == 1 and leaver and leaver[0].reason == "disabled in the directory"
      and list(leaver[0].lease_ids) == [leaver_lease.lease_id], "DirectorySync (dry run): the disabled user and the lease it would lose")
check(len(auditor.call("leases", admin_pb2.LeasesRequest(user="py-leaver")).leases) == 1, "... and the lease is still held")
synced = operator.call("directory_sync", admin_pb2.DirectorySyncRequest())
check(not synced.dry_run and synced.directory.disabled == 1 and [r.user for r in synced.reclaimed] == ["py-leaver"],
      "DirectorySync: the leaver's lease is revoked")
event = leaver_conn.wait_event(protocol_pb2.Event.LEASE_REVOKED)
check(event is not None and "disabled in the directory" in event.message, f"... and its holder is told why ({event.message if event else 'no event'})")
leaver_conn.expect_error("check_out", floating_pb2.CheckOutRequest(feature="cc.tool"), Code.USER_NOT_ALLOWED, "a user disabled in the directory")
leaver_conn.close()
# A single node answers ClusterStatus for itself (a cluster's nodes answer from etcd).
cluster = auditor.call("cluster_status", admin_pb2.ClusterStatusRequest())
check(cluster.cluster == "" and len(cluster.nodes) == 1 and cluster.nodes[0].role == "single"
      and cluster.nodes[0].applied_sequence == cluster.head_sequence > 0,
      f"ClusterStatus: a single node, at change {cluster.head_sequence}")
# Linger: the seat stays held after check-in and the same identity takes it up again (rebound).
jo = Connection(TOKENS["client"], user="jo", host="jo-ws")
lingering = checkout(jo, "linger.tool")
jo.call("check_in", floating_pb2.CheckInRequest(lease_id=lingering.lease_id))
again = checkout(jo, "linger.tool")
check(again.lease_id == lingering.lease_id, "linger: the same identity gets its lingering seat back")
trial = checkout(jo, "trial.tool")
check(trial.license_id == "py-trial", "the first grant of a trial licence starts its trial")
wal, wal_crc_ok = read_wal(os.path.join(STATE, "ledger"))
kinds = {record.WhichOneof("change") for _, record in wal}
check({"granted", "released", "lingered", "rebound", "trial_started", "activated", "deactivated", "assignment_run"} <= kinds,
      f"the write-ahead log holds every kind of change made so far ({len(wal)} records)")
check(wal_crc_ok and [seq for seq, _ in wal] == list(range(wal[0][0], wal[0][0] + len(wal))), "... with good CRC-32C and consecutive numbers")
snapshot = admin.call("snapshot", admin_pb2.SnapshotRequest())
check(snapshot.sequence > 0 and snapshot.size_bytes > 0, "Snapshot: written")
ada.expect_error("snapshot", admin_pb2.SnapshotRequest(), Code.PERMISSION_DENIED, "a client asking for a snapshot")

# ---- tokens and malformed input -------------------------------------------------------------
try:
    Connection("not-a-token", user="mallory")
    check(False, "a wrong token is refused")
except ServerError as error:
    check(error.code == Code.UNAUTHENTICATED, "a wrong token: UNAUTHENTICATED")

raw = Connection(hello=False)
raw.send_frame(b"\xff\xff\xff")
reply = raw.receive()
check(reply.error.code == Code.INVALID_ARGUMENT, "a frame that is not a ClientMessage: INVALID_ARGUMENT")
try:
    raw.receive()
    check(False, "... and the connection is closed")
except (EOFError, ConnectionError):
    check(True, "... and the connection is closed")

raw = Connection(hello=False)
raw.sock.sendall(struct.pack(">I", 100_000_000))
check(raw.receive().error.code == Code.RESOURCE_EXHAUSTED, "a length over max_frame_bytes: RESOURCE_EXHAUSTED")

raw = Connection(hello=False)
raw.send("status", floating_pb2.StatusRequest())
check(raw.receive().error.code == Code.INVALID_ARGUMENT, "a request before Hello: INVALID_ARGUMENT")

raw = Connection(hello=False)
raw.sock.sendall(struct.pack(">I", 50) + b"\x08\x01")
raw.sock.shutdown(socket.SHUT_WR)
check(raw.receive().error.code == Code.INVALID_ARGUMENT, "a truncated frame, then end of input: INVALID_ARGUMENT")

fresh = Connection(TOKENS["client"], user="gina")
unknown = protocol_pb2.ClientMessage(request_id=99).SerializeToString() + b"\xba\x06\x00"  # field 103, empty
fresh.send_frame(unknown)
check(fresh.receive().error.code == Code.UNIMPLEMENTED, "a request this server does not know: UNIMPLEMENTED")
fresh.expect_error("hello", protocol_pb2.Hello(user="gina"), Code.INVALID_ARGUMENT, "a second Hello (the connection stays open)")
check(fresh.call("heartbeat", floating_pb2.HeartbeatRequest()).renewed == 0, "... and still answers")

# Resume: a second connection resumes the session of the first, which is told and closed.
first = Connection(TOKENS["client"], user="hank")
held = checkout(first, "many.tool")
second = Connection(TOKENS["client"], user="hank", resume=first.hello.session_id)
check(second.hello.resumed and second.hello.session_id == first.hello.session_id, "Hello with resume_session_id resumes the session")
check(first.wait_event(protocol_pb2.Event.SESSION_SUPERSEDED) is not None, "the old connection is told it was superseded (SESSION_SUPERSEDED)")
second.call("check_in", floating_pb2.CheckInRequest(lease_id=held.lease_id))

# A resume overtaken by a newer one of the same client (a Hello it gave up on, arriving late) is
# refused, and the newer connection keeps the session.
first = Connection(TOKENS["client"], user="iris")
held = checkout(first, "many.tool")
second = Connection(TOKENS["client"], user="iris", resume=first.hello.session_id, attempt=2)
check(second.hello.resumed, "Hello with resume_attempt 2 resumes the session")
late = Connection(TOKENS["client"], user="iris", hello=False)
late.expect_error("hello", protocol_pb2.Hello(protocol_version=protocol_pb2.PROTOCOL_VERSION_1, user="iris", token=TOKENS["client"],
                                              resume_session_id=first.hello.session_id, resume_attempt=1),
                  Code.STALE_RESUME, "a late Hello with resume_attempt 1")
beat = second.call("heartbeat", floating_pb2.HeartbeatRequest())
check(beat.renewed == 1 and not any(e.kind == protocol_pb2.Event.SESSION_SUPERSEDED for e in second.events),
      "... and the connection of attempt 2 keeps the session and its lease")
third = Connection(TOKENS["client"], user="iris", resume=first.hello.session_id, attempt=3)
check(third.hello.resumed and second.wait_event(protocol_pb2.Event.SESSION_SUPERSEDED) is not None,
      "a Hello with resume_attempt 3 takes the session over from attempt 2")
third.call("check_in", floating_pb2.CheckInRequest(lease_id=held.lease_id))

# ---- the daemon's files, read with the same generated code ---------------------------------
snapshots = sorted(glob.glob(os.path.join(STATE, "ledger", "snapshot-*.snap")))
check(snapshots != [], "the snapshot file is there")
if snapshots:
    data = open(snapshots[-1], "rb").read()
    crc, length = struct.unpack(">IQ", data[8:20])
    check(data[:8] == b"LICSNAP1" and crc32c(data[20:20 + length]) == crc, "the snapshot: LICSNAP1, length and CRC-32C")
    snap = note(store_pb2.Snapshot.FromString(data[20:20 + length]))
    check(len(snap.leases) >= 1 and len(snap.activations) >= 1, "the snapshot holds leases and activations")
blocks = open(os.environ["LICENSE_FILE"]).read().split("-----BEGIN LICENSED LICENSE-----")[1:]
for block in blocks:
    text = block.split("-----END LICENSED LICENSE-----")[0]
    signed = note(license_pb2.SignedLicense.FromString(base64.b64decode("".join(text.split()))))
    note(license_pb2.License.FromString(signed.license))
check(len(blocks) >= 10, f"the licence file's {len(blocks)} blocks parse as SignedLicense and License")

# ---- a write-ahead log written here, recovered by a second daemon ---------------------------
# An activation last seen two days ago: validating it makes the daemon log an ActivationSeen.
state2 = os.path.join(SCRATCH, "state2")
os.makedirs(os.path.join(state2, "ledger"))
now_ms = int(time.time() * 1000)
seeded = store_pb2.WalRecord()
seeded.activated.activation.CopyFrom(store_pb2.StoredActivation(
    activation_id="act-py-seeded", license_id="py-node", features=["viewer"], fingerprint=["fp-s1"], machine_name="seeded", user="sam",
    activated_at_ms=now_ms - 3 * 86400000, last_seen_ms=now_ms - 2 * 86400000))
# And a durable high-water mark of the wall clock three days ahead: the clock is set back.
mark = store_pb2.WalRecord()
mark.clock_mark.wall_ms = now_ms + 3 * 86400000
with open(os.path.join(state2, "ledger", "wal-00000000000000000001.log"), "wb") as f:
    f.write(wal_frame(1, note(seeded)) + wal_frame(2, note(mark)))
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port2 = probe.getsockname()[1]
probe.close()
second_daemon = subprocess.Popen([os.environ["LICENSED_BIN"], "--listen-host", "127.0.0.1", "--port", str(port2), "--state-dir", state2,
                                  "--license-paths", os.environ["LICENSE_FILE"], "--trusted-keys", os.environ["TRUSTED_KEYS"],
                                  "--metrics-listen", "off", "--admin-socket", "off", "--tokens", os.environ["TOKENS_SPEC"]],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port2), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    PORT, saved_port = port2, PORT
    sam = Connection(TOKENS["client"], user="sam", host="seeded")
    PORT = saved_port
    seen = sam.call("validate_activation", activation_pb2.ValidateActivationRequest(activation_id="act-py-seeded", fingerprint=["fp-s1"]))
    check(len(seen.certificate.claims) > 0, "a second daemon recovers the activation from a log written here and validates it")
    setback = sam.expect_error("check_out", floating_pb2.CheckOutRequest(feature="trial.tool"), Code.CLOCK_SETBACK,
                               "with the log's clock mark 3 days ahead, a trial licence")
    check(setback is not None and "3 days" in setback.message, "... naming how far back the clock is")
    lease = sam.call("check_out", floating_pb2.CheckOutRequest(feature="cad"))
    check(len(lease.lease_id) == 16, "... while a perpetual licence grants")
    status = sam.call("status", floating_pb2.StatusRequest())
    check(abs(status.clock_setback_ms - 3 * 86400000) < 600000 and status.clock_reference_ms == mark.clock_mark.wall_ms,
          "Status: clock_setback_ms about 3 days, clock_reference_ms the mark")
    sam.close()
    # The reply came once the record was durable; read it before the daemon's final snapshot cuts the log.
    records2, crc2 = read_wal(os.path.join(state2, "ledger"))
finally:
    second_daemon.terminate()
    second_daemon.wait(timeout=20)
check(crc2 and any(r.WhichOneof("change") == "activation_seen" and r.activation_seen.activation_id == "act-py-seeded" for _, r in records2),
      "... and logs that it saw the machine (ActivationSeen) with a CRC this client checks")

# ---- coverage of Protos/ --------------------------------------------------------------------
# Codes the daemon cannot be made to send on demand, each used here on the client side instead.
client_side = {
    Code.CODE_UNSPECIFIED: "the default of an empty Error",
    Code.UNAVAILABLE: "this client's code for a server it cannot reach (sent by the daemon only when a snapshot write fails)",
    Code.INTERNAL: "never sent by a correct daemon; this client's code for a reply of the wrong kind",
    Code.NOT_ACTIVE: "sent only by a standby of a cluster on etcd; scripts/test-cluster and the Swift cluster tests check it",
}
# (These are not checked here: a check of a protobuf default, or of values this client sets
# itself, would assert nothing about the daemon. The coverage check below only counts them.)

all_messages = set()
for module in MODULES:
    def walk(descriptor):
        if descriptor.GetOptions().map_entry:
            return
        all_messages.add(descriptor.full_name)
        for nested in descriptor.nested_types:
            walk(nested)
    for descriptor in module.DESCRIPTOR.message_types_by_name.values():
        walk(descriptor)
missing_messages = sorted(all_messages - used_messages)
check(not missing_messages, f"every one of the {len(all_messages)} message types of Protos/ was used" +
      (f"; missing: {', '.join(missing_messages)}" if missing_messages else ""))
all_codes = set(Code.Code.values())
missing_codes = sorted(Code.Code.Name(c) for c in all_codes - server_codes - set(client_side))
check(not missing_codes, f"every error code: {len(server_codes)} sent by the daemon here, {len(client_side)} used client-side" +
      (f"; missing: {', '.join(missing_codes)}" if missing_codes else ""))

print(f"python conformance: {checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
