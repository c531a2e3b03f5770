"""A failed statement inside a pipelined extended-protocol sequence: the client gets what
a server sends it, and another client is answered at once afterwards. The same script
runs against a PostgreSQL server, and the test compares the two transcripts.

Each case writes byte sequences as Postgrex (savepoint mode), psycopg and others do,
with an error in each position; after each write it reads up to the number of
ReadyForQuery replies a server sends (or up to an ErrorResponse, after a Flush)."""
import socket
import struct
import time

import psycopg

from wire_client import cstr, fields, login, message

SAVEPOINT = "postgrex_query"


def Q(sql):
    return message(b"Q", cstr(sql))


def P(sql, name=""):
    return message(b"P", cstr(name) + cstr(sql) + struct.pack(">H", 0))


def B(*params, portal="", statement=""):
    body = cstr(portal) + cstr(statement) + struct.pack(">HH", 0, len(params))
    for p in params:
        body += struct.pack(">I", len(p)) + p.encode()
    return message(b"B", body + struct.pack(">H", 0))


def D(name="", kind=b"P"):
    return message(b"D", kind + cstr(name))


def E(portal=""):
    return message(b"E", cstr(portal) + struct.pack(">I", 0))


S, H = message(b"S"), message(b"H")


def describe(tag, body):
    if tag == b"E":
        return f"E({fields(body)['C']})"
    if tag == b"Z":
        return f"Z({body.decode()})"
    return tag.decode()


def read(s, until):
    """Replies up to `until` ReadyForQuery messages, or up to an ErrorResponse ("E")."""
    got, ready = [], 0
    buffer = b""
    s.settimeout(5)
    while True:
        while len(buffer) >= 5 and len(buffer) >= 1 + struct.unpack(">I", buffer[1:5])[0]:
            length = struct.unpack(">I", buffer[1:5])[0]
            tag, body, buffer = buffer[:1], buffer[5 : 1 + length], buffer[1 + length :]
            if tag in (b"N", b"S"):
                continue
            got.append(describe(tag, body))
            ready += tag == b"Z"
            if (until == "E" and tag == b"E") or (until != "E" and ready == until):
                return " ".join(got) + extra(s, buffer)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return " ".join(got) + " ...timed out"
        if not chunk:
            return " ".join(got) + " ...closed"
        buffer += chunk


def extra(s, buffer):
    """Anything more than a server sends shows up here."""
    s.settimeout(0.2)
    try:
        buffer += s.recv(65536)
    except socket.timeout:
        pass
    return f" +{len(buffer)} extra bytes" if buffer else ""


def other_answered(other):
    started = time.monotonic()
    other.sendall(Q("SELECT 'other'"))
    reply = read(other, 1)
    waited = time.monotonic() - started
    return "answered at once" if waited < 3 and reply.endswith("Z(I)") else f"waited {waited:.1f} s: {reply}"


def case(name, writes):
    a, other = login(), login()
    transcript = []
    for payload, until in writes:
        a.sendall(b"".join(payload))
        transcript.append(read(a, until))
    a.sendall(Q("SELECT 'a again'"))
    transcript.append(read(a, 1))
    print(f"{name}: {' | '.join(transcript)}; other client {other_answered(other)}")
    a.close()
    other.close()


setup = psycopg.connect(autocommit=True)
setup.execute("DROP TABLE IF EXISTS pe")
setup.execute("CREATE TABLE pe (id int PRIMARY KEY)")
setup.execute("INSERT INTO pe VALUES (1)")

dup = "INSERT INTO pe VALUES (1)"
# Postgrex's savepoint mode, all in one write: the failed Execute skips RELEASE SAVEPOINT.
case("savepoint mode, constraint error", [
    ([Q("BEGIN")], 1),
    ([Q(f"SAVEPOINT {SAVEPOINT}"), P(dup), B(), E(), Q(f"RELEASE SAVEPOINT {SAVEPOINT}"), S], 2),
    ([Q(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")], 1),
    ([Q("INSERT INTO pe VALUES (2)")], 1),
    ([Q("COMMIT")], 1),
])
# The same with a Flush: the client sees the error, then sends its Query and Sync.
case("savepoint mode after Flush", [
    ([Q("BEGIN")], 1),
    ([Q(f"SAVEPOINT {SAVEPOINT}"), P(dup), B(), D(), E(), H], "E"),
    ([Q(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}"), S], 1),
    ([Q(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")], 1),
    ([Q("COMMIT")], 1),
])
for where, messages in [
    ("Parse", [P("SELEC 1"), B(), D(), E()]),
    ("Bind", [P("SELECT $1::int"), B("x"), D(), E()]),
    ("Describe", [P("SELECT 1"), B(), D("nope"), E()]),
    ("Execute", [P("SELECT 1/0"), B(), D(), E()]),
]:
    case(f"error in {where}, then a Query and a Sync", [(messages + [Q("SELECT 2"), S], 1)])
    case(f"error in {where} in a transaction", [([Q("BEGIN")] + messages + [Q("SELECT 2"), S], 2), ([Q("ROLLBACK")], 1)])
case("error in the Query between extended messages", [([P("SELECT 1"), B(), D(), E(), Q("SELECT 1/0"), S], 2)])
case("two Syncs, error before the first", [([P("SELEC 1"), S, P("SELECT 3"), B(), E(), S], 2)])
case("error, Flush, then Query and Sync later", [([P("SELEC 1"), H], "E"), ([Q("SELECT 3"), S], 1), ([Q("SELECT 4")], 1)])
case("error at the Sync's commit", [
    ([Q("CREATE TEMP TABLE d (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)")], 1),
    ([P("INSERT INTO d VALUES (1), (1)"), B(), E(), S], 1),
])


def psycopg_pipeline(name, statements, transaction=False):
    conn, other = psycopg.connect(autocommit=True), login()
    try:
        with conn.pipeline():
            if transaction:
                conn.execute("BEGIN")
            for sql in statements:
                conn.execute(sql)
        outcome = "no error"
    except psycopg.Error as e:
        outcome = f"{type(e).__name__}"
    if transaction:
        conn.execute("ROLLBACK")
    print(f"psycopg pipeline, {name}: {outcome}; status {conn.info.transaction_status.name}; "
          f"again {conn.execute('SELECT 5').fetchone()[0]}; other client {other_answered(other)}")
    conn.close()
    other.close()


for transaction in (False, True):
    suffix = " in a transaction" if transaction else ""
    psycopg_pipeline("error first" + suffix, ["SELECT 1/0", "SELECT 2", "SELECT 3"], transaction)
    psycopg_pipeline("error in the middle" + suffix, ["SELECT 1", dup, "SELECT 3"], transaction)
    psycopg_pipeline("error last" + suffix, ["SELECT 1", "SELECT 2", "SELECT 1/0"], transaction)
