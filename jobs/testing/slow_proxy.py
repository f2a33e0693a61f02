"""ssh ProxyCommand relay with a download rate limit: ``slow_proxy.py HOST PORT BYTES_PER_S``.

Used by tests to make a transfer last long enough to interrupt it midway.
"""

import os
import socket
import sys
import threading
import time


def main() -> None:
    host, port, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.create_connection((host, port))

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    start, sent = time.monotonic(), 0
    while data := sock.recv(16384):
        os.write(1, data)
        sent += len(data)
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)


if __name__ == "__main__":
    main()
