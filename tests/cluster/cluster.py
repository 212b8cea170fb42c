#!/usr/bin/env python3
"""A licensed cluster on loopback for client tests: 3 etcd members (Debian's etcd-server) and 3
licensed nodes, on free ports, with everything under DIR (a temporary directory of the caller).
Test programs drive it from the command line, between their own steps:

  cluster.py up DIR LICENSED LICENSECTL ADMIN_TOKEN
                             signs a licence of 4 seats of "cad" with an issuer key of its own,
                             starts the cluster, waits for an active node, prints the servers
  cluster.py servers DIR     the nodes' client addresses, in node order
  cluster.py active DIR      the active node's client address
  cluster.py leases DIR FEATURE
                             the leases of FEATURE the active node lists: "lease_id_hex fencing_token"
                             lines, sorted (through licensectl with the admin token)
  cluster.py kill-active DIR kill -9 of the active node; waits until another node is active, then
                             restarts the killed one (it rejoins as a standby); prints the new active
  cluster.py stop-all DIR    kill -9 of every node (etcd keeps running)
  cluster.py start-all DIR   starts every stopped node; waits until one is active
  cluster.py down DIR        stops every process

Nodes: lease TTL 10 s, heartbeats every 1 s, election TTL 3 s, admin token as given. Each node's
log is DIR/nodeN/licensed.log. The state of the processes is DIR/cluster.json.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ETCD = "/usr/bin/etcd"


def free_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def load(directory):
    with open(os.path.join(directory, "cluster.json")) as f:
        return json.load(f)


def save(directory, state):
    path = os.path.join(directory, "cluster.json")
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


def spawn(arguments, log):
    with open(log, "ab") as out:
        process = subprocess.Popen(arguments, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return process.pid


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (an exited child of a process that has not reaped it) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def kill9(pid):
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 5
        while alive(pid) and time.time() < deadline:
            time.sleep(0.02)


def readiness(node):
    """(HTTP status, body) of the node's /readyz, or (0, reason)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{node['metrics_port']}/readyz", timeout=1) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def active_node(state, timeout=30, excluding=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for node in state["nodes"]:
            if node["name"] != excluding and alive(node["pid"]) and readiness(node)[0] == 200:
                return node
        time.sleep(0.05)
    raise SystemExit("cluster.py: no node became active within %d s: %s" % (timeout, [(n["name"], readiness(n)) for n in state["nodes"]]))


def start_node(directory, state, node):
    node["pid"] = spawn([state["licensed"], "--config", os.path.join(directory, node["name"], "licensed.yaml")],
                        os.path.join(directory, node["name"], "licensed.log"))
    # Answering its operator port (as a standby, or the active node).
    deadline = time.time() + 30
    while readiness(node)[0] == 0 and time.time() < deadline:
        if not alive(node["pid"]):
            raise SystemExit(f"cluster.py: {node['name']} exited at start; see {directory}/{node['name']}/licensed.log")
        time.sleep(0.05)


def up(directory, licensed, licensectl, admin_token):
    run = lambda *arguments: subprocess.run([licensectl, *arguments], capture_output=True, text=True, check=True).stdout
    admin_hash = run("token", "hash", admin_token).strip()
    issuer, issuer_key, license_file = (os.path.join(directory, name) for name in ("issuer", "issuer.pub.pem", "cluster.lic"))
    run("keys", "generate", "--out", issuer)
    with open(os.path.join(directory, "spec.json"), "w") as f:
        json.dump({"id": "cluster", "licensee": "Example Corp", "features": [{"name": "cad", "count": 4}], "model": "LICENSE_MODEL_FLOATING"}, f)
    with open(license_file, "w") as f:
        f.write(run("license", "sign", "--key", issuer + ".pem", "--key-id", "acme", os.path.join(directory, "spec.json")))
    ports = free_ports(12)
    members = [{"name": f"m{i + 1}", "client_port": ports[2 * i], "peer_port": ports[2 * i + 1]} for i in range(3)]
    initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer_port']}" for m in members)
    for m in members:
        m["pid"] = spawn([ETCD, "--name", m["name"], "--data-dir", os.path.join(directory, "etcd-" + m["name"]),
                          "--listen-client-urls", f"http://127.0.0.1:{m['client_port']}",
                          "--advertise-client-urls", f"http://127.0.0.1:{m['client_port']}",
                          "--listen-peer-urls", f"http://127.0.0.1:{m['peer_port']}",
                          "--initial-advertise-peer-urls", f"http://127.0.0.1:{m['peer_port']}",
                          "--initial-cluster", initial, "--initial-cluster-state", "new",
                          "--initial-cluster-token", os.path.basename(directory),
                          "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap", "--log-level", "error"],
                         os.path.join(directory, f"etcd-{m['name']}.log"))
    endpoints = [f"127.0.0.1:{m['client_port']}" for m in members]
    nodes = [{"name": f"node{i + 1}", "port": ports[6 + 2 * i], "metrics_port": ports[7 + 2 * i], "pid": 0} for i in range(3)]
    state = {"licensed": licensed, "licensectl": licensectl, "admin_token": admin_token, "etcd": members, "nodes": nodes}
    save(directory, state)
    for node in nodes:
        os.makedirs(os.path.join(directory, node["name"]), exist_ok=True)
        with open(os.path.join(directory, node["name"], "licensed.yaml"), "w") as f:
            f.write(f"""listen_host: 127.0.0.1
port: {node['port']}
state_dir: {directory}/{node['name']}/state
license_paths: [{license_file}]
trusted_keys: [{{id: acme, public_key: {issuer_key}}}]
lease_ttl_ms: 10000
heartbeat_interval_ms: 1000
reaper_interval_ms: 200
admin_socket: "off"
metrics_listen: 127.0.0.1:{node['metrics_port']}
tokens: [{{role: admin, sha256: {admin_hash}}}]
cluster:
  etcd_endpoints: [{", ".join(endpoints)}]
  name: ctest
  node_id: {node['name']}
  advertise_address: 127.0.0.1:{node['port']}
  election_ttl_seconds: 3
""")
    # etcd answers before the nodes start (they would wait for it, but their first calls time out).
    deadline = time.time() + 60
    while subprocess.run(["etcdctl", "--endpoints", ",".join(endpoints), "endpoint", "health"], env={**os.environ, "ETCDCTL_API": "3"},
                         capture_output=True).returncode != 0:
        if time.time() > deadline:
            raise SystemExit("cluster.py: etcd did not become healthy within 60 s")
        time.sleep(0.2)
    for node in nodes:
        start_node(directory, state, node)
        save(directory, state)
    active_node(state)
    print(",".join(f"127.0.0.1:{n['port']}" for n in nodes))


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    command, directory = sys.argv[1], os.path.abspath(sys.argv[2])
    if command == "up":
        up(directory, *sys.argv[3:6])
        return
    state = load(directory)
    address = lambda node: f"127.0.0.1:{node['port']}"
    if command == "servers":
        print(",".join(address(n) for n in state["nodes"]))
    elif command == "active":
        print(address(active_node(state)))
    elif command == "leases":
        listed = subprocess.run([state["licensectl"], "leases", "--server", address(active_node(state)), "--token", state["admin_token"],
                                 "--feature", sys.argv[3], "--json"], capture_output=True, text=True)
        if listed.returncode != 0:
            raise SystemExit(f"cluster.py: licensectl leases failed: {listed.stderr.strip()}")
        for lease in sorted(json.loads(listed.stdout), key=lambda lease: lease["lease_id"]):
            print(lease["lease_id"], lease["fencing_token"])
    elif command == "kill-active":
        victim = active_node(state)
        kill9(victim["pid"])
        successor = active_node(state, excluding=victim["name"])
        start_node(directory, state, victim)
        save(directory, state)
        print(address(successor))
    elif command == "stop-all":
        for node in state["nodes"]:
            kill9(node["pid"])
    elif command == "start-all":
        for node in state["nodes"]:
            if not alive(node["pid"]):
                start_node(directory, state, node)
        save(directory, state)
        print(address(active_node(state)))
    elif command == "down":
        for process in state["nodes"] + state["etcd"]:
            kill9(process.get("pid"))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
