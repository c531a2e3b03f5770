"""Commits rows in a loop for a while, reconnecting whenever the instance drops the
connection; then checks that every acknowledged commit is still there.

Prints: acked N, lost M, first error: ...
"""
import sys
import time

import psycopg

seconds = float(sys.argv[1])
acked, errors, next_id = [], [], 1
deadline = time.monotonic() + seconds
conn = None
while time.monotonic() < deadline:
    try:
        if conn is None or conn.closed:
            conn = psycopg.connect(autocommit=True, connect_timeout=10)
        conn.execute("INSERT INTO crash VALUES (%s)", (next_id,))
        acked.append(next_id)
    except psycopg.Error as e:
        errors.append(str(e).strip().splitlines()[0])
        conn = None
        time.sleep(0.02)
    next_id += 1

# The instance may still be coming back from the last kill.
for _ in range(200):
    try:
        with psycopg.connect(autocommit=True, connect_timeout=10) as conn:
            present = conn.execute("SELECT count(*) FROM crash WHERE id = ANY(%s)", (acked,)).fetchone()[0]
        break
    except psycopg.Error:
        time.sleep(0.1)
print("acked", len(acked))
print("lost", len(acked) - present)
print("first error:", errors[0] if errors else "none")
