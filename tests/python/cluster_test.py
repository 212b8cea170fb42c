"""Cluster conformance, from the independent Python client (protoc --python_out, Debian's
python3-protobuf, its own framing over a raw socket): what the C and Swift clients rely on across a
failover. A standby answers Hello with NOT_ACTIVE naming the active server; after kill -9 of the
active node, a Hello with resume_session_id (and resume_attempt) on the new active resumes the
session with its leases — same ids, same fencing tokens, no lease created or lost; a resume that
is not newer than the connection holding the session is refused with STALE_RESUME.

Run by scripts/test-python-cluster, which starts the cluster (tests/cluster/cluster.py);
environment: CLUSTER_PY, CLUSTER_DIR, ADMIN_TOKEN."""
import os
import socket
import struct
import subprocess
import sys

from licensed.v1 import admin_pb2, floating_pb2, protocol_pb2

Code = protocol_pb2.Error
DIRECTORY = os.environ["CLUSTER_DIR"]
ADMIN = os.environ["ADMIN_TOKEN"]
checks = failures = 0


def check(condition, what):
    global checks, failures
    checks += 1
    print(("ok   - " if condition else "FAIL - ") + what, flush=True)
    failures += 0 if condition else 1


def cluster(command, *arguments):
    return subprocess.run([sys.executable, os.environ["CLUSTER_PY"], command, DIRECTORY, *arguments], capture_output=True, text=True,
                          check=True).stdout.strip()


class ServerError(Exception):
    def __init__(self, error):
        super().__init__(f"{Code.Code.Name(error.code)}: {error.message}")
        self.error = error


class Connection:
    """One connection: frames are a 4-byte big-endian length and a ClientMessage / ServerMessage."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.next_id = 1

    def call(self, field, request):
        message = protocol_pb2.ClientMessage(request_id=self.next_id)
        self.next_id += 1
        getattr(message, field).CopyFrom(request)
        body = message.SerializeToString()
        self.sock.sendall(struct.pack(">I", len(body)) + body)
        while True:
            reply = protocol_pb2.ServerMessage.FromString(self.read(struct.unpack(">I", self.read(4))[0]))
            if reply.request_id == message.request_id:
                if reply.WhichOneof("body") == "error":
                    raise ServerError(reply.error)
                return getattr(reply, reply.WhichOneof("body"))

    def read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("the server closed the connection")
            data += chunk
        return data

    def hello(self, token="", resume=b"", attempt=0):
        return self.call("hello", protocol_pb2.Hello(protocol_version=protocol_pb2.PROTOCOL_VERSION_1, client_name="py-cluster",
                                                     client_version="1.0", user="pat", host="py-host", token=token,
                                                     resume_session_id=resume, resume_attempt=attempt))


def refusal(call):
    try:
        call()
        return None
    except ServerError as error:
        return error.error


def listed(address):
    """The leases of cad the node at `address` lists: {lease id: fencing token}."""
    admin = Connection(address)
    admin.hello(token=ADMIN)
    reply = admin.call("leases", admin_pb2.LeasesRequest(feature="cad"))
    return {lease.holder.lease_id: lease.holder.fencing_token for lease in reply.leases}


servers = cluster("servers").split(",")
active = cluster("active")
standby = next(server for server in servers if server != active)

error = refusal(lambda: Connection(standby).hello())
check(error is not None and error.code == Code.NOT_ACTIVE and error.active_server == active,
      f"a standby answers Hello with NOT_ACTIVE naming the active server ({error.active_server if error else 'no error'})")

holder = Connection(active)
session = holder.hello().session_id
leases = [holder.call("check_out", floating_pb2.CheckOutRequest(feature="cad", checkout_key=os.urandom(16))) for _ in range(2)]
held = {lease.lease_id: lease.fencing_token for lease in leases}
check(listed(active) == held, "two leases checked out on the active node, listed there with their fencing tokens")

successor = cluster("kill-active")
check(successor != active, f"kill -9 of the active node: {successor} took over")
resumed = Connection(successor)
hello = resumed.hello(resume=session, attempt=1)
check(hello.resumed and hello.session_id == session, "Hello with resume_session_id on the new active resumes the session")
beat = resumed.call("heartbeat", floating_pb2.HeartbeatRequest(lease_ids=list(held)))
check(beat.renewed == 2 and not beat.lost_lease_ids, "a heartbeat of the resumed session renews both leases, none lost")
check(listed(successor) == held, "the new active lists the same two leases, same fencing tokens: none created, none lost")

late = Connection(successor)
error = refusal(lambda: late.hello(resume=session, attempt=1))
check(error is not None and error.code == Code.STALE_RESUME, "a resume not newer than the connection holding the session: STALE_RESUME")
check(resumed.call("heartbeat", floating_pb2.HeartbeatRequest(lease_ids=list(held))).renewed == 2,
      "... and that connection keeps the session and its leases")

for lease_id in held:
    resumed.call("check_in", floating_pb2.CheckInRequest(lease_id=lease_id))
check(listed(successor) == {}, "both checked in by the resumed session")

print(f"python cluster conformance: {checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
