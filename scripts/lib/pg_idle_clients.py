#!/usr/bin/env python3
"""scripts/lib/pg_idle_clients.py: opens N PostgreSQL client connections and keeps them idle.

Used by scripts/bench-reservoird to measure a pooler's memory per idle client. Each connection
does the protocol-3 startup and logs in (trust, cleartext or md5; the password from PGPASSWORD),
waits for ReadyForQuery, then stays open doing nothing. Connections are opened `--parallel` at a
time (non-blocking sockets, one selector). When all are up it prints "ready N" (or "failed ..."
and exits 1), then waits until stdin is closed, and closes everything.

    PGPASSWORD=... pg_idle_clients.py --host 127.0.0.1 --port 6432 --user u --dbname d -n 10000
"""
import argparse
import hashlib
import os
import resource
import selectors
import socket
import struct
import sys
import time


def startup_packet(user, dbname):
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", dbname), ("application_name", "pg_idle_clients")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def password_message(secret):
    body = secret.encode() + b"\0"
    return b"p" + struct.pack("!I", len(body) + 4) + body


class Conn:
    def __init__(self, args, password):
        self.args = args
        self.password = password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.buf = b""
        self.out = startup_packet(args.user, args.dbname)
        self.ready = False
        err = self.sock.connect_ex((args.host, args.port))
        if err not in (0, 115):  # EINPROGRESS
            raise OSError(err, os.strerror(err))

    def on_writable(self):
        if self.out:
            n = self.sock.send(self.out)
            self.out = self.out[n:]

    def on_readable(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server during login")
        self.buf += data
        while len(self.buf) >= 5:
            t = self.buf[0:1]
            (length,) = struct.unpack("!I", self.buf[1:5])
            if len(self.buf) < 1 + length:
                break
            body = self.buf[5:1 + length]
            self.buf = self.buf[1 + length:]
            if t == b"E":
                fields = dict((f[:1], f[1:]) for f in body.split(b"\0") if f)
                raise ConnectionError("login failed: %s %s" % (
                    fields.get(b"C", b"").decode(), fields.get(b"M", b"").decode()))
            if t == b"R":
                (code,) = struct.unpack("!i", body[:4])
                if code == 3:
                    self.out += password_message(self.password)
                elif code == 5:
                    salt = body[4:8]
                    inner = hashlib.md5((self.password + self.args.user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    self.out += password_message("md5" + outer)
                elif code != 0:
                    raise ConnectionError("unsupported authentication request %d" % code)
            elif t == b"Z":
                self.ready = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--dbname", required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    password = os.environ.get("PGPASSWORD", "")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.n + 100)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    sel = selectors.DefaultSelector()
    done = []
    pending = 0
    started = 0
    deadline = time.monotonic() + args.timeout
    try:
        while len(done) < args.n:
            while pending < args.parallel and started < args.n:
                c = Conn(args, password)
                sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                pending += 1
                started += 1
            if time.monotonic() > deadline:
                raise TimeoutError("%d of %d logged in after %.0f s" % (len(done), args.n, args.timeout))
            for key, ev in sel.select(timeout=1.0):
                c = key.data
                if ev & selectors.EVENT_WRITE:
                    c.on_writable()
                if ev & selectors.EVENT_READ:
                    c.on_readable()
                if c.ready:
                    sel.unregister(c.sock)
                    done.append(c)
                    pending -= 1
                elif not c.out:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                else:
                    sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    except Exception as e:  # noqa: BLE001 - any failure is reported to the caller
        print("failed after %d clients: %s" % (len(done), e), flush=True)
        return 1
    print("ready %d" % len(done), flush=True)
    sys.stdin.read()  # until the caller closes our stdin
    for c in done:
        c.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
