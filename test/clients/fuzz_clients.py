"""Deterministic fuzzing of the wire protocol beside a canary: several clients send
mutated sequences of valid frontend messages (dropped, repeated, swapped, cut, bytes
flipped, types and lengths changed, random bytes, split writes, sudden disconnects;
other client encodings among them), while a canary client commits a row every so
often and checks every answer, and that it reads text in its own encoding and session.

    fuzz_clients.py SEED SECONDS [CLIENTS]

Prints the number of cases, the canary's failures and slowest answer, and whether
every row it committed is still there; the caller checks that the backend process
never changed. Same seed, same cases."""
import random
import socket
import struct
import sys
import threading
import time

import psycopg

from wire_client import cstr, login, message

seed, seconds = int(sys.argv[1]), float(sys.argv[2])
# No socket of a fuzz client may wait for ever (a login included).
socket.setdefaulttimeout(10)
clients = int(sys.argv[3]) if len(sys.argv) > 3 else 4


def parse(sql, name=""):
    return message(b"P", cstr(name) + cstr(sql) + b"\0\0")


def bind(params=(), portal="", stmt=""):
    body = cstr(portal) + cstr(stmt) + struct.pack(">HH", 0, len(params))
    for p in params:
        body += struct.pack(">i", len(p)) + p
    return message(b"B", body + b"\0\0")


def execute(portal="", rows=0):
    return message(b"E", cstr(portal) + struct.pack(">I", rows))


SYNC, FLUSH = message(b"S"), message(b"H")
CORPUS = [
    [message(b"Q", cstr("SELECT 1"))],
    [message(b"Q", cstr("SELECT g, md5(g::text) FROM generate_series(1, 200) g"))],
    [message(b"Q", cstr("BEGIN")), message(b"Q", cstr("SELECT 1/0")), message(b"Q", cstr("ROLLBACK"))],
    [message(b"Q", cstr("BEGIN; CREATE TEMP TABLE t (x int); INSERT INTO t VALUES (1); COMMIT"))],
    [parse("SELECT $1::int + 1"), bind([b"41"]), message(b"D", b"P\0"), execute(), SYNC],
    [parse("SELECT 1/0"), bind(), execute(), message(b"Q", cstr("SELECT 2")), SYNC],
    [parse("SELECT g FROM generate_series(1, 50) g"), bind(), execute(rows=10), FLUSH, execute(rows=10), SYNC],
    [parse("SELECT 1", "s1"), SYNC, bind(stmt="s1"), execute(), message(b"C", b"Ss1\0"), SYNC],
    [message(b"Q", cstr("COPY (SELECT 1) TO STDOUT"))],
    [message(b"Q", cstr("CREATE TEMP TABLE IF NOT EXISTS c (x text); COPY c FROM STDIN")), message(b"d", b"a\n"), message(b"c")],
    [message(b"Q", cstr("COPY c FROM STDIN")), message(b"d", b"b\n"), message(b"f", cstr("no"))],
    [message(b"Q", cstr("SET statement_timeout = 50; SELECT pg_sleep(1)"))],
    [message(b"Q", cstr("LISTEN fuzz; NOTIFY fuzz, 'x'; UNLISTEN fuzz"))],
    [message(b"Q", cstr("SELECT repeat('[', 100000)::jsonb"))],
    # Other client encodings: invalid bytes, notifications and settings beyond ASCII.
    [message(b"Q", cstr("SET client_encoding TO 'SJIS'")), message(b"Q", b"SELECT '\x81'\0")],
    [message(b"Q", cstr("SET client_encoding TO 'LATIN1'; LISTEN fuzz")), message(b"Q", b"NOTIFY fuzz, 'caf\xe9'\0")],
    [message(b"Q", cstr("SET client_encoding TO 'EUC_JP'")), message(b"Q", b"SET search_path TO \"\xc6\xfc\", public\0"),
     message(b"Q", cstr("SELECT convert('\\xff'::bytea, 'UTF8', 'LATIN1')"))],
    [message(b"Q", cstr("BEGIN")), message(b"Q", cstr("SAVEPOINT a")), parse("INSERT INTO nowhere VALUES (1)"), bind(), execute(),
     message(b"Q", cstr("ROLLBACK TO SAVEPOINT a")), SYNC, message(b"Q", cstr("COMMIT"))],
]


def mutate(rng, messages):
    messages = list(messages)
    for _ in range(rng.randint(1, 3)):
        if not messages:
            messages = [SYNC]
        kind = rng.randrange(10)
        i = rng.randrange(len(messages))
        m = bytearray(messages[i])
        if kind == 0:
            del messages[i]
        elif kind == 1:
            messages.insert(i, bytes(m))
        elif kind == 2 and len(messages) > 1:
            j = rng.randrange(len(messages))
            messages[i], messages[j] = messages[j], messages[i]
        elif kind == 3:
            messages[i] = bytes(m[: rng.randrange(1, len(m) + 1)])
        elif kind == 4 and len(m) > 5:
            m[rng.randrange(5, len(m))] = rng.randrange(256)
            messages[i] = bytes(m)
        elif kind == 5:
            m[0] = rng.choice(b"QPBEDCSHFdcfpX?\x00")
            messages[i] = bytes(m)
        elif kind == 6:
            m[1:5] = struct.pack(">I", rng.choice([0, 3, 4, 5, len(m) + 100, 10_001, 1 << 30, rng.randrange(1 << 20)]))
            messages[i] = bytes(m)
        elif kind == 7:
            messages.insert(i, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))))
        elif kind == 8:
            messages.insert(i, message(bytes([rng.choice(b"QdSHc")]), bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20)))))
        else:
            messages.append(SYNC)
    return b"".join(messages)


stop_at = time.monotonic() + seconds
cases = [0]
lock = threading.Lock()


def fuzzer(n):
    rng = random.Random(seed * 1000 + n)
    while time.monotonic() < stop_at:
        payload = mutate(rng, rng.choice(CORPUS))
        try:
            s = login()
            s.settimeout(0.3)
            if rng.random() < 0.3:  # split writes
                for k in range(0, len(payload), 7):
                    s.sendall(payload[k:k + 7])
            else:
                s.sendall(payload)
            deadline = time.monotonic() + rng.choice([0, 0.1, 0.3, 1])
            while time.monotonic() < deadline and s.recv(65536):
                pass
        except (OSError, TimeoutError):
            pass
        finally:
            try:
                s.close()
            except Exception:
                pass
        with lock:
            cases[0] += 1


threads = [threading.Thread(target=fuzzer, args=(n,)) for n in range(clients)]
canary = psycopg.connect(autocommit=True)
canary.execute("DROP TABLE IF EXISTS fuzz_canary")
canary.execute("CREATE TABLE fuzz_canary (n int)")
committed, failures, slowest = 0, [], 0.0
for t in threads:
    t.start()
while time.monotonic() < stop_at:
    start = time.monotonic()
    try:
        canary.execute("INSERT INTO fuzz_canary VALUES (%s)", [committed + 1])
        committed += 1
        # Another client's encoding or settings must never show here.
        text = canary.execute("SELECT %s::text || current_setting('search_path')", ["é€"]).fetchone()[0]
        if text != 'é€"$user", public':
            failures.append(f"read {text!r}")
    except psycopg.Error as e:
        failures.append(f"{type(e).__name__}: {e}".strip())
        canary = psycopg.connect(autocommit=True)
    slowest = max(slowest, time.monotonic() - start)
    time.sleep(0.1)
for t in threads:
    t.join()
kept = psycopg.connect(autocommit=True).execute("SELECT count(*) FROM fuzz_canary").fetchone()[0]
print(f"cases {cases[0]}")
print(f"canary failures {len(failures)} {failures[:3]}")
print(f"canary slowest {slowest:.1f} s")
print(f"committed rows all kept {kept == committed} ({kept} of {committed})")
