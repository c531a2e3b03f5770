"""A client that asks for a big result and then stops reading. Prints when the query
was sent, then, after `sleep` seconds, how its connection ended."""
import sys
import time

from wire_client import cstr, login, message

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10
s = login()
s.sendall(message(b"Q", cstr("SELECT g, repeat('x', 100) FROM generate_series(1, 50000000) g")))
print("sent", flush=True)
time.sleep(seconds)
got = 0
s.settimeout(10)
try:
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
except OSError as e:
    print("ended:", type(e).__name__, flush=True)
print(f"closed after {got} bytes", flush=True)
