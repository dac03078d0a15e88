#!/usr/bin/env python3
"""The slowloris attack from issue 12, against a running server.

Opens N connections that each send half a request head and nothing more,
then reports how many the server still holds open after WAIT seconds.
Before the fix every connection stayed open; with the header-read timeout
(TENSOR_WASM_API_HEADER_READ_TIMEOUT_MS, default 10 s) none should.

Usage: scripts/attack-slowloris.py [HOST:PORT] [N=3000] [WAIT=15]
Talks only to the address given (use 127.0.0.1); raise `ulimit -n` above N.
"""
import socket
import sys
import time

addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8080"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
wait = float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
host, port = addr.rsplit(":", 1)

socks = []
for _ in range(n):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    s.setblocking(False)
    socks.append(s)
opened = time.monotonic()
print(f"opened {len(socks)} half-sent connections to {addr}; waiting {wait:.0f} s")
time.sleep(wait)
still_open = 0
answered_503 = 0
for s in socks:
    try:
        data = s.recv(4096)
        if data.startswith(b"HTTP/1.1 503"):
            answered_503 += 1
        elif data:
            still_open += 1
    except BlockingIOError:
        still_open += 1  # nothing to read and not closed: still held
    except OSError:
        pass  # reset: closed
    finally:
        s.close()
print(f"after {time.monotonic() - opened:.1f} s: {still_open} still open, "
      f"{answered_503} answered 503 too_many_connections, "
      f"{n - still_open - answered_503} closed by the server")
sys.exit(1 if still_open else 0)
