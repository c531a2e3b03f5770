"""A request pipelined ahead of a slow one is answered at once: a server flushes its
output at every ReadyForQuery, so the reply to the first request reaches the client
while the second still runs (node-postgres's pipeline mode relies on it). Prints, for
the simple and the extended protocol, whether the first reply came before the second
request's; the same script runs against a PostgreSQL server."""
import struct

from wire_client import cstr, login, message


def Q(sql):
    return message(b"Q", cstr(sql))


def extended(sql):
    return (message(b"P", cstr("") + cstr(sql) + struct.pack(">H", 0))
            + message(b"B", cstr("") + cstr("") + struct.pack(">HHH", 0, 0, 0))
            + message(b"E", cstr("") + struct.pack(">I", 0))
            + message(b"S"))


def first_reply_alone(first, second):
    s = login()
    s.sendall(first + second)
    data = b""
    while data.count(b"Z\0\0\0\5") == 0:
        data += s.recv(65536)
    # Whatever came with the first ReadyForQuery: the second request's reply must not.
    alone = data.count(b"Z\0\0\0\5") == 1 and b"pg_sleep" not in data and b"SELECT 1\0C" not in data
    while data.count(b"Z\0\0\0\5") < 2:
        data += s.recv(65536)
    s.close()
    return alone


print("simple:", "first reply alone" if first_reply_alone(Q("SELECT 1"), Q("SELECT pg_sleep(2)")) else "first reply held back")
print("extended:", "first reply alone" if first_reply_alone(extended("SELECT 1"), extended("SELECT pg_sleep(2)")) else "first reply held back")
