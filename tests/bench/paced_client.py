"""An independent open-loop client, to check licensed-bench's open loop against: CONNECTIONS
sessions, each starting a check-out + check-in pair on a fixed schedule (RATE pairs/s in all,
interval CONNECTIONS / RATE per connection, phases spread evenly), the check-in sent as soon as
the check-out's reply is read; a pair's latency runs from when it was due to the check-in's
reply (licensed-bench's definition, no coordinated omission). One thread, non-blocking sockets,
a selector; the protocol through Debian's python3-protobuf and the code protoc generates.

Usage: paced_client.py PORT FEATURE RATE SECONDS [CONNECTIONS, default 10]
Prints one JSON line: offered, completed, p50/p90/p99 in µs, and how late the client itself was
in sending (its own scheduling error, to tell the client's limits from the server's)."""
import json
import os
import selectors
import socket
import struct
import sys
import time

from licensed.v1 import floating_pb2, protocol_pb2

port, feature, rate, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
connections = int(sys.argv[5]) if len(sys.argv) > 5 else 10
interval = connections / rate


def frame(message):
    body = message.SerializeToString()
    return struct.pack(">I", len(body)) + body


class Session:
    def __init__(self, index):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.next_id = 1
        self.due = {}  # request id → when its pair was due
        hello = protocol_pb2.ClientMessage(request_id=self.take_id())
        hello.hello.CopyFrom(protocol_pb2.Hello(protocol_version=protocol_pb2.PROTOCOL_VERSION_1, client_name="paced-client",
                                                client_version="1.0", user=f"paced-{index}", host="paced-host", pid=os.getpid()))
        self.sock.sendall(frame(hello))
        self.read_blocking()
        self.sock.setblocking(False)
        self.phase = index * interval / connections
        self.started = 0

    def take_id(self):
        self.next_id += 1
        return self.next_id - 1

    def read_blocking(self):
        while len(self.buffer) < 4 or len(self.buffer) < 4 + struct.unpack(">I", self.buffer[:4])[0]:
            self.buffer += self.sock.recv(65536)
        (length,) = struct.unpack(">I", self.buffer[:4])
        self.buffer = self.buffer[4 + length:]

    def send(self, body_field, request, due):
        message = protocol_pb2.ClientMessage(request_id=self.take_id())
        getattr(message, body_field).CopyFrom(request)
        self.due[message.request_id] = due
        self.sock.send(frame(message))

    def replies(self):
        self.buffer += self.sock.recv(1 << 20)
        while len(self.buffer) >= 4:
            (length,) = struct.unpack(">I", self.buffer[:4])
            if len(self.buffer) < 4 + length:
                break
            message = protocol_pb2.ServerMessage.FromString(self.buffer[4:4 + length])
            self.buffer = self.buffer[4 + length:]
            yield message


sessions = [Session(i) for i in range(connections)]
# select(2), not epoll: epoll_wait takes whole milliseconds, and Python rounds the timeout up (sends
# went out 0.5 ms late on average); select takes microseconds.
selector = selectors.SelectSelector()
for session in sessions:
    selector.register(session.sock, selectors.EVENT_READ, session)
start = time.monotonic() + 0.05
end = start + seconds
latencies, lateness, errors = [], [], 0
pending = 0
while True:
    now = time.monotonic()
    # Start every pair that is due.
    next_due = None
    for session in sessions:
        while True:
            due = start + session.phase + session.started * interval
            if due >= end:
                break
            if due > now:
                next_due = due if next_due is None else min(next_due, due)
                break
            session.send("check_out", floating_pb2.CheckOutRequest(feature=feature), due)
            lateness.append(now - due)
            session.started += 1
            pending += 1
    if next_due is None and pending == 0:
        break
    timeout = None if next_due is None else max(0.0, next_due - time.monotonic())
    for key, _ in selector.select(timeout):
        session = key.data
        for message in session.replies():
            due = session.due.pop(message.request_id, None)
            kind = message.WhichOneof("body")
            if kind == "check_out":
                session.send("check_in", floating_pb2.CheckInRequest(lease_id=message.check_out.lease_id), due)
            elif kind == "check_in":
                latencies.append(time.monotonic() - due)
                pending -= 1
            elif kind == "error":
                errors += 1
                pending -= 1


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1e6 if ordered else 0


print(json.dumps({
    "offered_per_s": rate, "connections": connections, "completed": len(latencies), "errors": errors,
    "p50_us": round(percentile(latencies, 50)), "p90_us": round(percentile(latencies, 90)), "p99_us": round(percentile(latencies, 99)),
    "client_send_late_p50_us": round(percentile(lateness, 50)), "client_send_late_p99_us": round(percentile(lateness, 99)),
}))
