"""Messages a server refuses from a connection: the sender gets the server's error and
is closed, alone; a canary client beside it goes on, and its table is still there.
The same script runs against a PostgreSQL server; the test compares the transcripts."""
import socket
import struct

import psycopg

from wire_client import DB, PATH, USER, fields, login, message, recv_message


def outcome(s):
    """What the server says, up to its closing the connection."""
    said = []
    s.settimeout(3)
    while True:
        try:
            tag, body = recv_message(s)
        except ConnectionResetError:  # a server closes without reading the rest
            tag = None
        except TimeoutError:
            return " ".join(said) + " still open"
        if tag is None:
            return " ".join(said) + " closed"
        if tag == b"E":
            f = fields(body)
            said.append(f"{f['S']} {f['C']}")
        elif tag == b"Z":
            said.append("Z")


canary = psycopg.connect(autocommit=True)
canary.execute("DROP TABLE IF EXISTS kept")
canary.execute("CREATE TABLE kept (v int)")
canary.execute("INSERT INTO kept VALUES (1)")

cases = {
    "password message after authentication": message(b"p", b"secret\0"),
    "unknown message type": message(b"?"),
    "Describe longer than the small-message limit": message(b"D", b"S" + b"x" * 20000 + b"\0"),
    "Execute longer than the small-message limit": message(b"E", b"x" * 20000 + b"\0" + struct.pack(">I", 0)),
    "Sync with a body, then a Query": message(b"S", b"xx") + message(b"Q", b"SELECT 42\0"),
    "Flush with a body": message(b"H", b"x"),
}
for name, payload in cases.items():
    s = login()
    s.sendall(payload)
    print(f"{name}: {outcome(s)}; canary {canary.execute('SELECT count(*) FROM kept').fetchone()[0]}")

# Before authentication: a password message announced at 1 GiB is refused at once.
s = socket.socket(socket.AF_UNIX)
s.connect(PATH)
params = f"user\0{USER}\0database\0{DB}\0\0".encode()
s.sendall(struct.pack(">II", len(params) + 8, 196608) + params)
recv_message(s)
s.sendall(b"p" + struct.pack(">I", 1 << 30) + b"x" * 1000)
print(f"huge password message: {outcome(s)}")

s = login()
s.sendall(message(b"Q", b"COPY kept FROM STDIN\0"))
print("COPY started:", recv_message(s)[0].decode())
s.sendall(message(b"d", b"2\n") + message(b"Q", b"SELECT 42\0"))
print(f"Query during COPY FROM STDIN: {outcome(s)}; canary {canary.execute('SELECT count(*) FROM kept').fetchone()[0]}")

# The same in one write, before the server could say COPY started; and a COPY ended in
# the same write, then a Query, which is fine.
s = login()
s.sendall(message(b"Q", b"COPY kept FROM STDIN\0") + message(b"d", b"3\n") + message(b"Q", b"SELECT 42\0"))
print(f"Query pipelined into COPY FROM STDIN: {outcome(s)}; canary {canary.execute('SELECT count(*) FROM kept').fetchone()[0]}")
s = login()
s.sendall(message(b"Q", b"COPY kept FROM STDIN\0") + message(b"d", b"4\n") + message(b"c") + message(b"Q", b"SELECT 42\0"))
print(f"Query pipelined after a whole COPY: {outcome(s)}; canary {canary.execute('SELECT count(*) FROM kept').fetchone()[0]}")
print("canary still works:", canary.execute("SELECT 'yes'").fetchone()[0])
