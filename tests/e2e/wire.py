"""The licensed.v1 wire protocol for the end-to-end tests: one framed connection (4-byte
big-endian length, then a ClientMessage / ServerMessage) with its own request ids.
Needs the Python code protoc generates from Protos/ on PYTHONPATH."""
import signal
import socket
import struct
import subprocess
import sys
import time

from licensed.v1 import protocol_pb2


class Connection:
    """One connection that has said Hello (optionally resuming a session, with a token)."""

    def __init__(self, port, user="e2e", resume=b"", tok="", client_name="e2e-test"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.next_id = 1
        hello = protocol_pb2.ClientMessage()
        hello.hello.protocol_version = protocol_pb2.PROTOCOL_VERSION_1
        hello.hello.client_name = client_name
        hello.hello.user = user
        hello.hello.token = tok
        hello.hello.resume_session_id = resume
        reply = self.call(hello)
        self.session = reply.hello.session_id
        self.resumed = reply.hello.resumed

    def send(self, message):
        """Sends without waiting for the answer."""
        message.request_id = self.next_id
        self.next_id += 1
        body = message.SerializeToString()
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def read_reply(self):
        (length,) = struct.unpack(">I", self._read(4))
        return protocol_pb2.ServerMessage.FromString(self._read(length))

    def call(self, message):
        self.send(message)
        while True:
            reply = self.read_reply()
            if reply.request_id == message.request_id:
                return reply
            # request_id 0: a pushed event (shutdown, reclaim): ignored here.

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def wait_for_port(port, seconds=30):
    """True once something accepts connections on 127.0.0.1:port (a daemon that has bound it)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Checks:
    """A test's checks: `check(condition, what)` prints "ok   - what" (unless quiet) or
    "FAIL - what" and counts both; `finish(name)` prints the tally and exits 1 if any failed."""

    def __init__(self, quiet=False):
        self.passed = self.failed = 0
        self.quiet = quiet

    def __call__(self, condition, what):
        if condition:
            self.passed += 1
            if not self.quiet:
                print("ok   -", what, flush=True)
        else:
            self.failed += 1
            print("FAIL -", what, flush=True)
        return condition

    def finish(self, name):
        print(f"{name}: {self.passed} passed, {self.failed} failed")
        raise SystemExit(1 if self.failed else 0)


def stop_daemon(daemon, log=None):
    """SIGTERM, up to 30 s for a graceful stop, then SIGKILL; closes `log` and returns its text."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    if log is None:
        return ""
    log.close()
    return open(log.name, "rb").read().decode(errors="replace")


def exit_on_sigterm():
    """Turns SIGTERM (the test scripts' `timeout`) into SystemExit, so that a test's `finally`
    still stops the daemon, the browser and the holders it started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
