"""Checks the Python code protoc generates from Protos/: every message type builds, serializes and
parses, and a framed ClientMessage has the documented layout (4-byte big-endian length, then the
protobuf bytes). Run by scripts/test-protos with PYTHONPATH set to the generated code."""
import struct
import sys

from licensed.v1 import activation_pb2, admin_pb2, floating_pb2, license_pb2, protocol_pb2

failures = 0
checks = 0


def check(condition, what):
    global failures, checks
    checks += 1
    if not condition:
        failures += 1
        print("FAIL:", what)


# Every message of every file round-trips through its default (empty) and a filled form.
for module in (activation_pb2, admin_pb2, floating_pb2, license_pb2, protocol_pb2):
    for name, descriptor in module.DESCRIPTOR.message_types_by_name.items():
        cls = getattr(module, name)
        message = cls()
        check(cls.FromString(message.SerializeToString()) == message, f"{name} empty round trip")

hello = protocol_pb2.ClientMessage(request_id=7)
hello.hello.protocol_version = protocol_pb2.PROTOCOL_VERSION_1
hello.hello.user = "ada"
hello.hello.fingerprint.extend(["00ff", "aa11"])
body = hello.SerializeToString()
frame = struct.pack(">I", len(body)) + body
(length,) = struct.unpack(">I", frame[:4])
check(length == len(frame) - 4, "frame length prefix")
again = protocol_pb2.ClientMessage.FromString(frame[4:])
check(again.WhichOneof("body") == "hello" and again.hello.user == "ada", "ClientMessage hello round trip")

error = protocol_pb2.ServerMessage(request_id=9)
error.error.code = protocol_pb2.Error.NO_SEATS
error.error.message = "all 10 seats of cad.solver are in use"
check(protocol_pb2.ServerMessage.FromString(error.SerializeToString()).error.code == protocol_pb2.Error.NO_SEATS, "Error code")

# Error codes keep the numbers the protocol documents.
expected = ["CODE_UNSPECIFIED", "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "NO_SEATS",
            "LICENSE_EXPIRED", "NOT_YET_VALID", "VERSION_NOT_ALLOWED", "NETWORK_NOT_ALLOWED", "USER_NOT_ALLOWED",
            "ACTIVATION_LIMIT", "DEVICE_LIMIT", "BASE_REQUIRED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED",
            "UNIMPLEMENTED", "UNAVAILABLE", "INTERNAL"]
check([protocol_pb2.Error.Code.Name(i) for i in range(len(expected))] == expected, "Error.Code numbering")

lic = license_pb2.License(id="acme-1", licensee="Example")
lic.features.add(name="cad.solver", count=10)
signed = license_pb2.SignedLicense(license=lic.SerializeToString(), signature=b"\0" * 64, key_id="acme-2026")
check(license_pb2.License.FromString(license_pb2.SignedLicense.FromString(signed.SerializeToString()).license).features[0].count == 10,
      "SignedLicense nesting")

print(f"python: {checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
