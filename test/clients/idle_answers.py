"""What needs no backend does not wait for it: while another client holds the backend
in a transaction, an idle client's lone Sync (DBConnection's ping) is answered at once
with ReadyForQuery 'I', and a lone Flush or stray COPY message gets nothing, as from a
server. A Sync inside the client's own transaction or after its own unsynced messages
still goes to the backend. Prints a transcript to compare with a server's; "at once"
means within 1 s (the holder keeps the backend for 3 s)."""
import threading
import time

import psycopg

from wire_client import cstr, fields, login, message, recv_message


def replies(s, until=b"Z"):
    said = []
    while True:
        tag, body = recv_message(s)
        if tag is None:
            return said + ["closed"]
        if tag == b"E":
            said.append("E " + fields(body)["C"])
        elif tag == b"Z":
            return said + ["Z " + body.decode()]
        else:
            said.append(tag.decode())


def timed(s, payload):
    start = time.monotonic()
    s.sendall(payload)
    said = replies(s)
    return " ".join(said), time.monotonic() - start < 1.0


holder = psycopg.connect()
holder.execute("CREATE TEMP TABLE held (v int)")
holder.commit()
released = threading.Event()


def hold():
    holder.execute("INSERT INTO held VALUES (1)")  # opens a transaction: the backend is held
    started.set()
    time.sleep(3)
    holder.rollback()
    released.set()


started = threading.Event()
thread = threading.Thread(target=hold)
thread.start()
started.wait()

idle = login()
said, at_once = timed(idle, message(b"S"))
print(f"lone Sync while another holds a transaction: {said}; at once {at_once}")

idle.sendall(message(b"H") + message(b"d", b"x\n") + message(b"c"))
said, at_once = timed(idle, message(b"S"))
print(f"lone Flush and stray COPY messages, then Sync: {said}; at once {at_once}")

other = login()
said, at_once = timed(other, message(b"Q", cstr("SELECT 1")))
print(f"a Query from another idle client waits its turn: {said}; at once {at_once}")
thread.join()

# The client's own transaction: its Sync goes to the backend and reports T, then E.
mine = login()
print("own transaction:", " ".join(replies(mine) if mine.sendall(message(b"Q", cstr("BEGIN"))) is None else []))
print("Sync inside it:", " ".join(replies(mine) if mine.sendall(message(b"S")) is None else []))
mine.sendall(message(b"Q", cstr("SELECT 1/0")))
print("an error inside it:", " ".join(replies(mine)))
print("Sync in the failed transaction:", " ".join(replies(mine) if mine.sendall(message(b"S")) is None else []))
mine.sendall(message(b"Q", cstr("ROLLBACK")))
replies(mine)

# Unsynced extended messages, then a Sync in a write of its own: the Sync ends them.
mine.sendall(message(b"P", cstr("") + cstr("SELECT 2") + b"\0\0") + message(b"B", b"\0\0\0\0\0\0\0\0") + message(b"E", b"\0\0\0\0\0"))
time.sleep(0.2)
print("Sync after unsynced Parse/Bind/Execute:", " ".join(replies(mine) if mine.sendall(message(b"S")) is None else []))

# Pings from many idle connections beside a holder: every one is answered at once.
started.clear()
thread = threading.Thread(target=hold)
thread.start()
started.wait()
idlers = [login() for _ in range(8)]
answered = [timed(s, message(b"S")) for s in idlers for _ in range(5)]
print(f"40 pings from 8 idle connections: all Z I {all(a == 'Z I' for a, _ in answered)}; all at once {all(t for _, t in answered)}")
thread.join()
