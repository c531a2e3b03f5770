"""Bad input from one client: it gets a clear error, the others and the data are
untouched. Speaks the protocol by hand (SCRAM-SHA-256 included) over the Unix socket."""
import time

import psycopg

from wire_client import login, message, recv_message


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
