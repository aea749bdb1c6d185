#!/usr/bin/env python3
"""Point-in-time recovery benchmark (issue 16), run by hand:

  (a) capture lag under a sustained redis-benchmark write load, and the
      master's throughput with and without capture;
  (b) replay rate of a restore to T through N logged commands, against
      `redis-cli --pipe` of the same commands into the same server;
  (c) peak RSS of the service while capturing 5 instances under load.

Tools: redis-server, redis-benchmark, redis-cli (public), and the
`dcs-backup` binary itself (`serve`, and its `pitr` client commands).
Lag is measured with `WAIT 1 <ms>`: the capture link acknowledges an
offset only once the segment holding it is stored, and acknowledges at
once after each stored segment, so a probe's `SET` reply → `WAIT` reply
time is the time from the write's acknowledgement to its durability.

    BIN=target/release/dcs-backup python3 bench/pitr-bench.py [a|b|c ...]
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("BIN", "target/release/dcs-backup")
REPLAY_COMMANDS = int(os.environ.get("REPLAY_COMMANDS", "10000000"))
WORK = tempfile.mkdtemp(prefix="pitr-bench-")
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def redis(args=()):
    port = free_port()
    d = tempfile.mkdtemp(dir=WORK)
    p = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
         "--appendonly", "no", "--repl-diskless-sync-delay", "0", *args],
        stdout=subprocess.DEVNULL,
    )
    procs.append(p)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
            return port
        time.sleep(0.05)
    sys.exit("redis-server did not start")


class Service:
    def __init__(self):
        self.dir = tempfile.mkdtemp(dir=WORK)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "serve.log"), "wb")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data-dir", self.dir, "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        procs.append(self.proc)
        for _ in range(200):
            if os.path.exists(os.path.join(self.dir, "credentials.json")):
                try:
                    socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                    break
                except OSError:
                    pass
            time.sleep(0.05)
        self.env = dict(os.environ, DCS_BACKUP_SERVER=f"http://127.0.0.1:{self.port}",
                        DCS_BACKUP_CREDENTIALS=os.path.join(self.dir, "credentials.json"))

    def cli(self, *args):
        r = subprocess.run([BIN, *args], capture_output=True, text=True, env=self.env)
        if r.returncode != 0:
            sys.exit(f"dcs-backup {' '.join(args)}: {r.stderr}")
        return r.stdout

    def adopt(self, name, port):
        return self.cli("instance", "add", name, "--address", f"127.0.0.1:{port}").strip()

    def wait_period(self, name):
        for _ in range(300):
            if json.loads(self.cli("pitr", "periods", name, "--json"))["total_count"]:
                return
            time.sleep(0.2)
        sys.exit("no restorable period")

    def hwm_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply(f):
    line = f.readline()
    if line[:1] in (b"+", b"-", b":"):
        return line
    if line[:1] == b"$":
        n = int(line[1:])
        return f.read(n + 2) if n >= 0 else None
    raise RuntimeError(line)


def benchmark(port, n, extra=()):
    """redis-benchmark SETs at full speed; returns requests per second."""
    out = sh("redis-benchmark", "-p", str(port), "-t", "set", "-n", str(n), "-r", "1000000",
             "-P", "16", "-c", "50", "-d", "16", "-q", "--csv", *extra)
    for line in out.splitlines():
        if line.startswith('"SET"'):
            return float(line.split(",")[1].strip('"'))
    raise RuntimeError(out)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def part_a():
    svc = Service()
    port = redis()
    svc.adopt("bench-lag", port)
    # Throughput without capture, then with; alternated, medians.
    n = 2_000_000
    base_rps, cap_rps = [], []
    base_rps.append(benchmark(port, n))
    svc.cli("pitr", "policy", "set", "bench-lag", "--interval", "120", "--keep-days", "1")
    svc.wait_period("bench-lag")
    cap_rps.append(benchmark(port, n))
    svc.cli("pitr", "policy", "off", "bench-lag")
    time.sleep(3)
    base_rps.append(benchmark(port, n))
    svc.cli("pitr", "policy", "set", "bench-lag", "--interval", "120", "--keep-days", "1")
    time.sleep(3)
    cap_rps.append(benchmark(port, n))
    # Lag: probes with WAIT while redis-benchmark keeps the master busy.
    lags = []
    done = threading.Event()

    def probe():
        s = socket.create_connection(("127.0.0.1", port))
        f = s.makefile("rb")
        i = 0
        while not done.is_set():
            s.sendall(resp("SET", "probe", i))
            read_reply(f)
            acked = time.monotonic()
            s.sendall(resp("WAIT", 1, 5000))
            r = read_reply(f)
            if r.strip() == b":1":
                lags.append(time.monotonic() - acked)
            i += 1
            time.sleep(0.02)
        s.close()

    t = threading.Thread(target=probe)
    t.start()
    load_rps = benchmark(port, 6_000_000)
    done.set()
    t.join()
    segs = svc.cli("pitr", "policy", "show", "bench-lag")
    print(f"(a) capture lag under redis-benchmark SET load of {load_rps:,.0f} writes/s "
          f"({len(lags)} probes): p50 {pct(lags, 0.5) * 1000:.0f} ms, p99 {pct(lags, 0.99) * 1000:.0f} ms, "
          f"max {max(lags) * 1000:.0f} ms")
    print(f"    master throughput without capture {statistics.median(base_rps):,.0f}/s "
          f"(runs {', '.join(f'{x:,.0f}' for x in base_rps)}), with capture "
          f"{statistics.median(cap_rps):,.0f}/s (runs {', '.join(f'{x:,.0f}' for x in cap_rps)})")
    print(f"    service: {segs.strip()}; peak RSS {svc.hwm_kb() / 1024:.0f} MiB")


def segment_data(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[-24:-16], "little")
    data_len = int.from_bytes(raw[-16:-8], "little")
    assert raw[-8:] == b"DCSPITR1" and len(raw) == data_len + n * 16 + 24, path
    return raw[:data_len]


def part_b():
    svc = Service()
    port = redis()
    iid = svc.adopt("bench-replay", port)
    svc.cli("pitr", "policy", "set", "bench-replay", "--interval", "120", "--keep-days", "1")
    svc.wait_period("bench-replay")
    # N logged SETs (plus the stream's own SELECT/PINGs).
    sh("redis-benchmark", "-p", str(port), "-t", "set", "-n", str(REPLAY_COMMANDS), "-r", "1000000",
       "-P", "32", "-c", "20", "-d", "16", "-q")
    time.sleep(2)
    t = time.time()
    want = sh("redis-cli", "-p", str(port), "debug", "digest").strip()
    time.sleep(2)
    svc.cli("pitr", "policy", "off", "bench-replay")  # nothing captures the replay itself
    time.sleep(3)
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
    sh("redis-cli", "-p", str(port), "flushall")
    start = time.monotonic()
    svc.cli("pitr", "restore", "bench-replay", "--to", at, "--wait")
    restore_s = time.monotonic() - start
    assert sh("redis-cli", "-p", str(port), "debug", "digest").strip() == want, "restore differs"
    log = open(os.path.join(svc.dir, "serve.log"), encoding="utf-8", errors="replace").read()

    def stamp(needle):
        line = next(l for l in log.splitlines() if needle in l)
        hms = line.split("T", 1)[1][:12]
        h, m, s = hms.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    replay_s = stamp("pitr restore: log replayed") - stamp("restore plan")
    done = next(l for l in log.splitlines() if "pitr restore: log replayed" in l)
    commands = int(done.split("commands=", 1)[1].split()[0])
    # The same commands through redis-cli --pipe into the same server.
    pipe_file = os.path.join(WORK, "commands.resp")
    seg_dir = os.path.join(svc.dir, "backups")
    with open(pipe_file, "wb") as out:
        segs = []
        for d, _, fs in os.walk(seg_dir):
            segs += [os.path.join(d, f) for f in fs if f.endswith(".seg")]
        segs.sort(key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
        for p in segs:
            out.write(segment_data(p))
    sh("redis-cli", "-p", str(port), "flushall")
    start = time.monotonic()
    with open(pipe_file, "rb") as f:
        subprocess.run(["redis-cli", "-p", str(port), "--pipe"], stdin=f, check=True, capture_output=True)
    pipe_s = time.monotonic() - start
    print(f"(b) restore to T through {commands:,} logged commands: replay {replay_s:.1f} s "
          f"({commands / replay_s:,.0f} commands/s), whole job {restore_s:.1f} s; "
          f"redis-cli --pipe of the same {os.path.getsize(pipe_file) / 2**20:.0f} MiB: {pipe_s:.1f} s "
          f"({commands / pipe_s:,.0f}/s); ratio {pipe_s / replay_s:.2f}x")


def part_c():
    svc = Service()
    ports = [redis() for _ in range(5)]
    for i, p in enumerate(ports):
        svc.adopt(f"bench-rss{i}", p)
        svc.cli("pitr", "policy", "set", f"bench-rss{i}", "--interval", "120", "--keep-days", "1")
    for i in range(5):
        svc.wait_period(f"bench-rss{i}")
    loads = [subprocess.Popen(
        ["redis-benchmark", "-p", str(p), "-t", "set", "-n", "1500000", "-r", "1000000", "-P", "16",
         "-c", "10", "-d", "64", "-q"], stdout=subprocess.DEVNULL) for p in ports]
    peak = 0
    while any(l.poll() is None for l in loads):
        peak = max(peak, svc.rss_kb())
        time.sleep(0.2)
    time.sleep(2)
    print(f"(c) 5 instances captured under 5 concurrent redis-benchmark SET loads (64-byte values): "
          f"peak RSS {svc.hwm_kb() / 1024:.1f} MiB (VmHWM; sampled VmRSS max {peak / 1024:.1f} MiB)")


try:
    parts = sys.argv[1:] or ["a", "b", "c"]
    for p in parts:
        {"a": part_a, "b": part_b, "c": part_c}[p]()
finally:
    for p in procs:
        p.kill()
    shutil.rmtree(WORK, ignore_errors=True)
