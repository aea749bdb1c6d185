#!/usr/bin/env python3
"""Point-in-time recovery benchmark (issue 16), run by hand:

  (a) capture lag under a sustained redis-benchmark write load (near
      the issue's 50,000 writes/s floor, then at full speed), and the
      master's throughput with no replica, with capture, and with a plain
      redis-server replica instead: the master pinned to CPU 0 and the
      rest to the other CPUs, so the figure is the master's own cost;
  (b) replay rate of a restore to T through N logged commands, against
      `redis-cli --pipe` of the same commands into the same server;
  (c) peak RSS of the service while capturing 5 instances under load;
  (d) the restorable periods of a long history (1 M segments added to a
      real capture's catalog, HISTORY_SEGMENTS to change it).

Tools: redis-server, redis-benchmark, redis-cli (public), and the
`dcs-backup` binary itself (`serve`, and its `pitr` client commands).
Lag is measured with `WAIT 1 <ms>`: the capture link acknowledges an
offset only once the segment holding it is stored, and acknowledges at
once after each stored segment, so a probe's `SET` reply → `WAIT` reply
time is the time from the write's acknowledgement to its durability.

    BIN=target/release/dcs-backup python3 bench/pitr-bench.py [a|b|c|d ...]
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


# With two CPUs or more, part (a) gives the master a CPU of its own and
# runs everything else (redis-benchmark, the service, a plain replica) on
# the others, so the master's throughput shows the master's own cost of
# one more replica, not the CPU the other processes take on a shared
# machine. PIN=0 turns this off.
PIN = os.environ.get("PIN", "1") != "0" and (os.cpu_count() or 1) >= 2
OTHERS = f"1-{(os.cpu_count() or 2) - 1}"


def pinned(cmd, cpus):
    return ["taskset", "-c", cpus, *cmd] if PIN else cmd


def redis(args=(), cpus=None):
    port = free_port()
    d = tempfile.mkdtemp(dir=WORK)
    p = subprocess.Popen(
        pinned(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
         "--appendonly", "no", "--repl-diskless-sync-delay", "0", *args], cpus or OTHERS),
        stdout=subprocess.DEVNULL,
    )
    procs.append(p)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
            return port
        time.sleep(0.05)
    sys.exit("redis-server did not start")


class Service:
    def __init__(self, data_dir=None):
        self.dir = data_dir or tempfile.mkdtemp(dir=WORK)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "serve.log"), "ab")
        self.proc = subprocess.Popen(
            pinned([BIN, "serve", "--data-dir", self.dir, "--listen", f"127.0.0.1:{self.port}"], OTHERS),
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


def benchmark(port, n, extra=(), pin=True):
    """redis-benchmark SETs at full speed; returns requests per second."""
    cmd = ["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(n), "-r", "1000000",
           "-P", "16", "-c", "50", "-d", "16", "-q", "--csv", *extra]
    out = sh(*(pinned(cmd, OTHERS) if pin else cmd))
    for line in out.splitlines():
        if line.startswith('"SET"'):
            return float(line.split(",")[1].strip('"'))
    raise RuntimeError(out)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def part_a():
    svc = Service()
    port = redis(cpus="0")
    svc.adopt("bench-lag", port)
    # The master's throughput with no replica, with capture, and with a
    # plain redis-server replica instead (the cost any one more replica
    # has): alternated, three rounds, medians.
    n = 2_000_000
    # Before any replica ever attached the master keeps no replication
    # backlog; once one has, it feeds one for `repl-backlog-ttl` (1 h)
    # after the last leaves. Both "none" states are shown.
    arms = {"never": [], "none": [], "capture": [], "replica": []}
    for _ in range(3):
        arms["never"].append(benchmark(port, n))
    def replicas(want):
        for _ in range(600):
            if f"connected_slaves:{want}" in sh("redis-cli", "-p", str(port), "info", "replication"):
                return
            time.sleep(0.05)
        sys.exit(f"the master never had {want} replica(s)")

    for _ in range(3):
        arms["none"].append(benchmark(port, n))
        svc.cli("pitr", "policy", "set", "bench-lag", "--interval", "120", "--keep-days", "1")
        svc.wait_period("bench-lag")
        replicas(1)
        arms["capture"].append(benchmark(port, n))
        svc.cli("pitr", "policy", "off", "bench-lag")
        replicas(0)
        rport = redis(["--replicaof", "127.0.0.1", str(port)])
        replicas(1)
        arms["replica"].append(benchmark(port, n))
        sh("redis-cli", "-p", str(rport), "shutdown", "nosave")
        replicas(0)
    svc.cli("pitr", "policy", "set", "bench-lag", "--interval", "120", "--keep-days", "1")
    svc.wait_period("bench-lag")
    replicas(1)
    # Re-enabled after the other arms overran the master's backlog, the
    # link begins with a full sync: wait until it is caught up (three
    # writes in a row durable within 500 ms), or the lag figures would
    # include the base's transfer.
    probe = socket.create_connection(("127.0.0.1", port))
    pf = probe.makefile("rb")
    good = 0
    for i in range(600):
        probe.sendall(resp("SET", "settle", i) + resp("WAIT", 1, 500))
        read_reply(pf)
        good = good + 1 if read_reply(pf).strip() == b":1" else 0
        if good == 3:
            break
    probe.close()
    # The lag is measured unpinned: the service's share of a loaded
    # machine is what it is, not one CPU it shares with the load.
    if PIN:
        every = f"0-{(os.cpu_count() or 2) - 1}"
        master_pid = sh("redis-cli", "-p", str(port), "info", "server").split("process_id:")[1].split()[0]
        for pid in (master_pid, str(svc.proc.pid)):
            sh("taskset", "-a", "-p", "-c", every, pid)
    # Lag: probes with WAIT while redis-benchmark keeps the master busy.
    def lag_under(n, extra):
        lags = []
        done = threading.Event()

        def probe():
            s = socket.create_connection(("127.0.0.1", port))
            f = s.makefile("rb")
            i = 0
            while not done.is_set():
                s.sendall(resp("SET", f"probe:{threading.get_ident()}", i))
                read_reply(f)
                acked = time.monotonic()
                s.sendall(resp("WAIT", 1, 5000))
                r = read_reply(f)
                if r.strip() == b":1":
                    lags.append(time.monotonic() - acked)
                i += 1
                time.sleep(0.02)
            s.close()

        # Four probing connections, so p99 rests on a few hundred probes.
        threads = [threading.Thread(target=probe) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.005)
        rps = benchmark(port, n, extra=extra, pin=False)
        done.set()
        for t in threads:
            t.join()
        print(f"(a) capture lag under redis-benchmark SET load of {rps:,.0f} writes/s "
              f"({len(lags)} probes): p50 {pct(lags, 0.5) * 1000:.0f} ms, p99 {pct(lags, 0.99) * 1000:.0f} ms, "
              f"max {max(lags) * 1000:.0f} ms")

    # Near the floor of 50,000 writes/s (one connection-pipeline
    # per client, 10 clients), then at full speed.
    lag_under(2_000_000, ("-P", "1", "-c", "10"))
    lag_under(6_000_000, ())
    segs = svc.cli("pitr", "policy", "show", "bench-lag")
    print(f"    master throughput ({'master on CPU 0, the rest on ' + OTHERS if PIN else 'unpinned'}):")
    for arm, xs in arms.items():
        print(f"      {arm:8} {statistics.median(xs):>10,.0f}/s  (runs {', '.join(f'{x:,.0f}' for x in xs)})")
    med = {arm: statistics.median(xs) for arm, xs in arms.items()}
    print(f"      capture/replica {med['capture'] / med['replica']:.3f}, capture/none {med['capture'] / med['none']:.3f}, "
          f"replica/none {med['replica'] / med['none']:.3f}, none/never {med['none'] / med['never']:.3f}")
    svc.log.flush()
    with open(os.path.join(svc.dir, "serve.log"), errors="replace") as f:
        slow = [line for line in f if "storing a segment was slow" in line]
    print(f"    service: {segs.strip()}; peak RSS {svc.hwm_kb() / 1024:.0f} MiB; "
          f"{len(slow)} segment(s) took over 300 ms to store")
    for line in slow[:5]:
        print("      " + line.strip()[-160:])


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


def part_d():
    """A long history: HISTORY_SEGMENTS segments (a week under a constant
    write load is 2.4 M) added to a real capture's catalog, then
    `GET …/pitr/restorable-time-periods` timed through the CLI."""
    import sqlite3
    n = int(os.environ.get("HISTORY_SEGMENTS", "1000000"))
    svc = Service()
    port = redis()
    iid = svc.adopt("bench-history", port)
    svc.cli("pitr", "policy", "set", "bench-history", "--interval", "120", "--keep-days", "7")
    svc.wait_period("bench-history")
    db = sqlite3.connect(os.path.join(svc.dir, "catalog.db"))
    sh("redis-cli", "-p", str(port), "set", "k", "v")
    for _ in range(100):  # the write's segment stored
        if db.execute("SELECT COUNT(*) FROM pitr_segments").fetchone()[0]:
            break
        time.sleep(0.1)
    db.close()
    svc.cli("pitr", "policy", "off", "bench-history")
    time.sleep(2)
    svc.proc.terminate()
    svc.proc.wait()
    db = sqlite3.connect(os.path.join(svc.dir, "catalog.db"))
    shard, rid, off, at = db.execute(
        "SELECT shard, repl_id, end_offset, last_at FROM pitr_segments WHERE instance_id = ? "
        "ORDER BY last_at DESC, end_offset DESC LIMIT 1", (iid,)).fetchone()
    rows = []
    for i in range(n):
        a, t = off + i * 100, at + 1 + i * 250
        rows.append((iid, shard, rid, a, a + 100, t, t + 200, 0, 0, 100, 124, "0" * 64,
                     f"bench/{rid}-{a:020}.seg", 0, t + 200))
    db.executemany("INSERT INTO pitr_segments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    # A catalog that keeps runs has them as the service would have kept
    # them: folded once, as its migration folds an existing log.
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'pitr_runs'").fetchone():
        fold = open(os.path.join(os.path.dirname(__file__), "..", "migrations", "sqlite",
                                 "0011_pitr_runs.sql")).read()
        db.execute("DELETE FROM pitr_runs")
        db.executescript(fold[fold.index("INSERT INTO pitr_runs"):])
    db.commit()
    db.close()
    svc2 = Service(svc.dir)
    times = []
    for _ in range(5):
        start = time.monotonic()
        out = json.loads(svc2.cli("pitr", "periods", "bench-history", "--json"))
        times.append(time.monotonic() - start)
    print(f"(d) {n:,} segments more in the log: restorable-time-periods "
          f"median {statistics.median(times) * 1000:,.0f} ms (runs {', '.join(f'{x * 1000:,.0f}' for x in times)}), "
          f"{out['total_count']} period(s); service peak RSS {svc2.hwm_kb() / 1024:.1f} MiB")


try:
    parts = sys.argv[1:] or ["a", "b", "c", "d"]
    for p in parts:
        {"a": part_a, "b": part_b, "c": part_c, "d": part_d}[p]()
finally:
    for p in procs:
        p.kill()
    shutil.rmtree(WORK, ignore_errors=True)
