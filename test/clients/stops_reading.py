"""A client that asks for a big result and then stops reading. Prints when the query
was sent, then, after `sleep` seconds, how its connection ended."""
import sys
import time

from wire_client import cstr, login, message

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10
s = login()
# In the select list, so rows stream at once (in FROM the series is built first).
s.sendall(message(b"Q", cstr("SELECT generate_series(1, 50000000), repeat('x', 100)")))
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
