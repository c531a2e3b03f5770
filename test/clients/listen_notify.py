"""LISTEN/NOTIFY between connections: a notification reaches every connection that
listens on its channel, and only those, with the notifier's pid."""
import psycopg

listener = psycopg.connect(autocommit=True)
other = psycopg.connect(autocommit=True)
second = psycopg.connect(autocommit=True)
notifier = psycopg.connect(autocommit=True)
listener.execute("LISTEN jobs")
second.execute('LISTEN "Jobs Two"')


def received(conn, timeout=2.0, count=1):
    return [(n.channel, n.payload, n.pid) for n in conn.notifies(timeout=timeout, stop_after=count)]


notifier.execute("NOTIFY jobs, 'hello'")
got = received(listener)
print("listener got", [(ch, p) for ch, p, _ in got])
print("pid is the notifier's", bool(got) and got[0][2] == notifier.info.backend_pid)
print("other got", received(other, 0.5))
print("second got", received(second, 0.5))

with notifier.transaction():
    notifier.execute("SELECT pg_notify('Jobs Two', 'in a transaction')")
print("second got", [(ch, p) for ch, p, _ in received(second)])

# A second listener on the same channel keeps it after the first one unlistens.
second.execute("LISTEN jobs")
listener.execute("UNLISTEN jobs")
notifier.execute("NOTIFY jobs, 'again'")
print("second got", [(ch, p) for ch, p, _ in received(second)])
print("listener got after UNLISTEN", received(listener, 0.5))

# LISTEN in a transaction that rolls back (or fails) is not kept, as on a server, even
# when another client then listens on the same channel.
other.execute("BEGIN")
other.execute("LISTEN rolled")
other.execute("ROLLBACK")
other.execute("BEGIN")
other.execute("LISTEN failed")
try:
    other.execute("SELECT 1/0")
except psycopg.Error:
    pass
other.execute("ROLLBACK")
second.execute("LISTEN rolled")
second.execute("LISTEN failed")
notifier.execute("NOTIFY rolled, 'r'")
notifier.execute("NOTIFY failed, 'f'")
print("second got", sorted((ch, p) for ch, p, _ in received(second, count=2)))
print("other got after its LISTENs rolled back", received(other, 0.5))
second.execute("UNLISTEN rolled")
second.execute("UNLISTEN failed")

second.close()
notifier.execute("NOTIFY jobs, 'nobody'")
print("channels left", notifier.execute("SELECT count(*) FROM pg_listening_channels()").fetchone()[0])
# The pid in a notification is the notifier's BackendKeyData id; pg_backend_pid() is the
# one backend's, the same for every client (README, "Limits").
print("BackendKeyData ids distinct", len({c.info.backend_pid for c in (listener, other, notifier)}) == 3)
print("pg_backend_pid()", sorted({c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (listener, other, notifier)}))
for conn in (listener, other, notifier):
    conn.close()
