"""Bad input from one client: it gets a clear error, the others and the data are
untouched. Speaks the protocol by hand (SCRAM-SHA-256 included) over the Unix socket."""
import base64
import hashlib
import hmac
import os
import socket
import struct
import time

import psycopg

PATH = os.path.join(os.environ["PGHOST"], f".s.PGSQL.{os.environ['PGPORT']}")
USER, PASSWORD, DB = os.environ["PGUSER"], os.environ["PGPASSWORD"], os.environ["PGDATABASE"]


def recv_message(s):
    head = b""
    while len(head) < 5:
        chunk = s.recv(5 - len(head))
        if not chunk:
            return None, None
        head += chunk
    tag, length = head[:1], struct.unpack(">I", head[1:])[0]
    body = b""
    while len(body) < length - 4:
        body += s.recv(length - 4 - len(body))
    return tag, body


def message(tag, body):
    return tag + struct.pack(">I", len(body) + 4) + body


def login():
    s = socket.socket(socket.AF_UNIX)
    s.connect(PATH)
    params = f"user\0{USER}\0database\0{DB}\0\0".encode()
    s.sendall(struct.pack(">II", len(params) + 8, 196608) + params)
    recv_message(s)  # AuthenticationSASL
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    s.sendall(message(b"p", b"SCRAM-SHA-256\0" + struct.pack(">I", len(first)) + first))
    _, body = recv_message(s)
    server_first = body[4:].decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    s.sendall(message(b"p", f"{final_bare},p={proof}".encode()))
    while True:
        tag, _ = recv_message(s)
        if tag == b"Z":
            return s


def error_after(s, payload):
    if payload:
        s.sendall(payload)
    while True:
        tag, body = recv_message(s)
        if tag is None:
            return "closed without an error"
        if tag == b"E":
            fields = dict((f[:1].decode(), f[1:].decode()) for f in body.split(b"\0") if f)
            return f"{fields['S']} {fields['C']} {fields['M']}"


good = psycopg.connect(autocommit=True)
good.execute("CREATE TABLE kept (v int)")
good.execute("INSERT INTO kept VALUES (1)")

print("unknown message type:", error_after(login(), message(b"?", b"")))
print("impossible length:", error_after(login(), b"Q\0\0\0\x03"))

half = login()
half.sendall(b"Q\0\0\0\x64SELECT")  # a Query that never arrives whole
half.close()

copier = login()
copier.sendall(message(b"Q", b"COPY kept FROM STDIN\0"))
print("copy started:", recv_message(copier)[0])
copier.sendall(message(b"d", b"2\n") + message(b"d", b"3\n"))
copier.close()  # gone mid-COPY

# Parse/Bind/Execute then Flush, and nothing more: the backend is held mid-sequence.
flusher = login()
flusher.sendall(message(b"P", b"\0SELECT 1\0\0\0") + message(b"B", b"\0\0\0\0\0\0\0\0") + message(b"E", b"\0\0\0\0\0") + message(b"H", b""))
print("flushed:", [recv_message(flusher)[0] for _ in range(4)])
print("others still served:", good.execute("SELECT 'served'").fetchone()[0])
print("idle after Flush:", error_after(flusher, b""))

for _ in range(50):
    rows = good.execute("SELECT count(*) FROM kept").fetchone()[0]
    if rows == 1:
        break
    time.sleep(0.1)
print("rows kept:", rows)
print("good client still works:", good.execute("SELECT 'yes'").fetchone()[0])
