"""The notifications one transaction sends arrive together, in one write, as from a
server (psycopg's test_stop_after_batch reads them in one go). Twenty rounds: a raw
listener reads as soon as anything arrives and counts what the first read holds."""
import threading

import psycopg

from wire_client import cstr, login, message, recv_message

listener = login()
listener.sendall(message(b"Q", cstr("LISTEN batch")))
while recv_message(listener)[0] != b"Z":
    pass

together = 0
with psycopg.connect() as notifier:
    for i in range(20):
        got = []
        reader = threading.Thread(target=lambda: got.append(listener.recv(65536)))
        reader.start()
        with notifier.transaction():
            notifier.execute(f"NOTIFY batch, 'first {i}'")
            notifier.execute(f"NOTIFY batch, 'second {i}'")
        reader.join(10)
        together += got[0].count(b"A\0\0\0") == 2
print(f"rounds whose two notifications came in one read: {together} of 20")
