#!/usr/bin/python3
"""A TCP relay the desktop e2e can cut and heal, standing between two hot-standby servers (the
bash counterpart of the Rust harness's `Relay`).

  relay.py LISTEN_IP:PORT TARGET_IP:PORT

SIGUSR1 cuts the link: every relayed connection is closed and new ones are closed as soon as they
are accepted. SIGUSR2 heals it. SIGTERM ends the relay. Each connection accepted is one line
"accepted" on stdout (a test counts a client's requests by them).
"""

import signal
import socket
import sys
import threading


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main(argv):
    listen, target = addr(argv[1]), addr(argv[2])
    cut = threading.Event()
    lock = threading.Lock()
    open_conns = set()

    def close_all():
        with lock:
            conns = list(open_conns)
            open_conns.clear()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def on_cut(*_):
        cut.set()
        close_all()

    signal.signal(signal.SIGUSR1, on_cut)
    signal.signal(signal.SIGUSR2, lambda *_: cut.clear())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def pipe(src, dst):
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
            with lock:
                open_conns.discard(s)

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(64)
    server.settimeout(0.2)  # so signals are handled promptly
    while True:
        try:
            client, _ = server.accept()
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        client.settimeout(None)
        print("accepted", flush=True)
        if cut.is_set():
            client.close()
            continue
        try:
            upstream = socket.create_connection(target, timeout=2)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        with lock:
            open_conns.update((client, upstream))
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv)
