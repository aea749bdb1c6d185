#!/usr/bin/env python3
"""Writes the RESTORE commands a slicing restore sends, as a RESP file for
`redis-cli --pipe` (bench/restore-bench.sh, case (d)).

Reads a scratch redis-server that loaded the benchmark RDB: for every
database with keys, `SELECT n`, then per key (SCAN + pipelined DUMP and
PEXPIRETIME) `RESTORE key <abs-ms or 0> <payload> ABSTTL REPLACE` -- the same
command, payload and flags the service sends, so both cases make the target
do the same work.

Usage: gen-restore-pipe.py PORT OUT_FILE    (prints "keys bytes" on stdout)
"""
import sys

import redis


def bulk(out, b):
    out.write(b"$%d\r\n" % len(b))
    out.write(b)
    out.write(b"\r\n")


def command(out, *args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        bulk(out, a)


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    r = redis.Redis(host="127.0.0.1", port=port)
    dbs = sorted(int(k[2:]) for k in r.info("keyspace"))
    keys = 0
    with open(path, "wb", buffering=4 << 20) as out:
        for db in dbs:
            c = redis.Redis(host="127.0.0.1", port=port, db=db)
            command(out, b"SELECT", str(db).encode())
            cursor = 0
            while True:
                cursor, batch = c.scan(cursor=cursor, count=1000)
                if batch:
                    p = c.pipeline(transaction=False)
                    for k in batch:
                        p.dump(k)
                        p.execute_command("PEXPIRETIME", k)
                    res = p.execute()
                    for i, k in enumerate(batch):
                        payload, at = res[2 * i], res[2 * i + 1]
                        if payload is None:  # expired or deleted meanwhile
                            continue
                        ttl = str(at if at and at > 0 else 0).encode()
                        command(out, b"RESTORE", k, ttl, payload, b"ABSTTL", b"REPLACE")
                        keys += 1
                if cursor == 0:
                    break
        size = out.tell()
    print(keys, size)


if __name__ == "__main__":
    main()
