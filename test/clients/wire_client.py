"""A PostgreSQL client spoken by hand (SCRAM-SHA-256 or trust), for tests that send
byte sequences no driver sends. Connects to the Unix socket the PG* variables name."""
import base64
import hashlib
import hmac
import os
import socket
import struct

PATH = os.path.join(os.environ["PGHOST"], f".s.PGSQL.{os.environ['PGPORT']}")
USER, PASSWORD, DB = os.environ["PGUSER"], os.environ.get("PGPASSWORD", ""), os.environ["PGDATABASE"]


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def recv_message(s):
    """(tag, body), or (None, None) when the server closed the connection."""
    head = recv_exact(s, 5)
    if head is None:
        return None, None
    tag, length = head[:1], struct.unpack(">I", head[1:])[0]
    body = recv_exact(s, length - 4)
    return (tag, body) if body is not None else (None, None)


def message(tag, body=b""):
    return tag + struct.pack(">I", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def fields(body):
    """The fields of an ErrorResponse or NoticeResponse body, by their one-letter codes."""
    return dict((f[:1].decode(), f[1:].decode()) for f in body.split(b"\0") if f)


def login():
    s = socket.socket(socket.AF_UNIX)
    s.connect(PATH)
    params = f"user\0{USER}\0database\0{DB}\0\0".encode()
    s.sendall(struct.pack(">II", len(params) + 8, 196608) + params)
    tag, body = recv_message(s)
    if tag == b"R" and struct.unpack(">I", body[:4])[0] == 10:
        scram(s)
    while True:
        tag, _ = recv_message(s)
        if tag is None:
            raise ConnectionError("the server closed the connection during login")
        if tag == b"Z":
            return s


def scram(s):
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
