"""A TCP proxy for fault drills: forwards 127.0.0.1:LISTEN to 127.0.0.1:TARGET and, on SIGUSR1,
cuts every open connection (both directions, with a reset) while it keeps accepting new ones.
Usage: tcp_proxy.py LISTEN_PORT TARGET_PORT"""
import signal
import socket
import struct
import sys
import threading

listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
lock = threading.Lock()
open_sockets = []


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def cut(*_):
    with lock:
        victims = list(open_sockets)
        open_sockets.clear()
    for s in victims:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            s.close()
        except OSError:
            pass
    print(f"proxy: cut {len(victims) // 2} connection(s)", flush=True)


signal.signal(signal.SIGUSR1, cut)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(64)
print("proxy: ready", flush=True)
while True:
    try:
        client, _ = server.accept()
    except InterruptedError:
        continue
    upstream = socket.create_connection(("127.0.0.1", target_port))
    with lock:
        open_sockets.extend([client, upstream])
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
