#!/usr/bin/env python3
"""The floor under restore case (b): Redis loading an RDB from a replication
link against loading the same file at start-up, with no dcs-backup at all.

Per round, in alternating order:
  native: a fresh redis-server started on a copy of RDB as dump.rdb,
          exec -> PING answers PONG
  feed:   a fresh empty redis-server (repl-diskless-load on-empty-db, as the
          service sets it) is sent REPLICAOF to this script, which answers the
          handshake, replies +FULLRESYNC and sends RDB with sendfile(2);
          REPLICAOF -> INFO replication says master_link_status:up
          (polled every 50 ms, as the service does)
and the target's CPU seconds for each. No verification, no job, no API: the
feed's time here is what any replication feed costs this Redis.

Usage: bench/bare-feed.py RDB [ROUNDS]   (temp dirs under $BENCH_DIR or /work)
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p != 6379:
            return p


def cli(port, *args):
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True
    ).stdout


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(d, port, *extra):
    os.makedirs(d, exist_ok=True)
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--dir", d, "--save", "",
         "--bind", "127.0.0.1", "--rdbcompression", "no", *extra],
        stdout=open(os.path.join(d, "redis.log"), "w"),
        stderr=subprocess.STDOUT,
    )


def wait_ready(port):
    while cli(port, "ping").strip() != "PONG":
        time.sleep(0.01)


def native(rdb, d):
    os.makedirs(d)
    shutil.copy(rdb, os.path.join(d, "dump.rdb"))
    os.sync()
    port = free_port()
    t0 = time.time()
    p = start(d, port, "--dbfilename", "dump.rdb")
    wait_ready(port)
    took = time.time() - t0
    cpu = cpu_seconds(p.pid)
    p.kill()
    p.wait()
    return took, cpu


def read_command(conn, buf):
    """Reads one RESP multibulk command; returns (name, rest of buffer)."""
    while True:
        if buf.startswith(b"*"):
            head, _, rest = buf.partition(b"\r\n")
            if _:
                n = int(head[1:])
                parts, ok = [], True
                for _ in range(n):
                    line, sep, rest = rest.partition(b"\r\n")
                    if not sep or len(rest) < int(line[1:]) + 2:
                        ok = False
                        break
                    size = int(line[1:])
                    parts.append(rest[:size])
                    rest = rest[size + 2:]
                if ok:
                    return parts[0].upper(), rest
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError("replica closed the link")
        buf += chunk


def feed(rdb, d):
    size = os.path.getsize(rdb)
    port = free_port()
    p = start(d, port, "--repl-diskless-load", "on-empty-db")
    wait_ready(port)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    master_port = listener.getsockname()[1]
    cpu0 = cpu_seconds(p.pid)
    t0 = time.time()
    cli(port, "replicaof", "127.0.0.1", str(master_port))
    conn, _ = listener.accept()
    buf = b""
    while True:
        name, buf = read_command(conn, buf)
        if name == b"PING":
            conn.sendall(b"+PONG\r\n")
        elif name == b"PSYNC":
            break
        else:
            conn.sendall(b"+OK\r\n")
    conn.sendall(b"+FULLRESYNC " + b"0" * 40 + b" 0\r\n$%d\r\n" % size)
    with open(rdb, "rb") as f:
        offset = 0
        while offset < size:
            offset += os.sendfile(conn.fileno(), f.fileno(), offset, 8 << 20)
    while "master_link_status:up" not in cli(port, "info", "replication"):
        time.sleep(0.05)
    took = time.time() - t0
    cpu = cpu_seconds(p.pid) - cpu0
    cli(port, "replicaof", "no", "one")
    conn.close()
    p.kill()
    p.wait()
    return took, cpu


def main():
    rdb = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    work = tempfile.mkdtemp(prefix="dcs-bare-feed.", dir=os.environ.get("BENCH_DIR", "/work"))
    ratios = []
    try:
        for i in range(rounds):
            cases = [("native", native), ("feed", feed)]
            if i % 2:
                cases.reverse()
            took = {}
            for name, fn in cases:
                d = os.path.join(work, f"{name}-{i}")
                t, cpu = fn(rdb, d)
                shutil.rmtree(d, ignore_errors=True)
                took[name] = t
                print(f"round {i + 1} {name}: {t:.3f} s, target CPU {cpu:.2f} s", flush=True)
            ratios.append(took["feed"] / took["native"])
            print(f"round {i + 1} feed/native: {ratios[-1]:.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios.sort()
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    print(f"feed/native per round: {' '.join(f'{r:.3f}' for r in ratios)} -> median {median:.3f}")


if __name__ == "__main__":
    main()
