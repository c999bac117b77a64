#!/usr/bin/env python3
"""paced.py PORT GAP SECS: one client of a relay at 127.0.0.1:PORT sends a
64-byte frame to itself, waits for it, busy-waits GAP seconds, and repeats
for SECS seconds; prints the number of round trips. A moderate, latency-bound
load: the server's loop blocks between frames (see scripts/paced.sh)."""
import socket, sys, time

port, gap, dur = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
me = b""
while len(me) < 4:
    me += s.recv(4 - len(me))
frame = me + b"x" * 59 + b"\0"
end, n = time.time() + dur, 0
while time.time() < end:
    s.sendall(frame)
    got = b""
    while not got.endswith(b"\0"):
        got += s.recv(4096)
    n += 1
    t = time.time() + gap
    while time.time() < t:  # time.sleep is too coarse for sub-millisecond gaps
        pass
print(n)
