#!/usr/bin/env python3
"""Benchmark of pglite-port through its stdio frames (not a test).

Installs the binary with its modules compiled ahead of time (`--precompile-to`, as the
Mix compiler does) in a temporary directory and runs everything from there. Prints the
first start on a machine (empty cache) with those modules and without them (the port
compiles), the warm start to the ready frame and the first query's reply after it,
medians of 1,000 SELECT 1 and extended-protocol round trips, 25,000 single-row INSERTs
in one transaction, pgbench's statements written back to back (the backend's own
throughput and CPU per request, with no client waiting in between: what one backend
can serve however many clients share it), and RSS idle, after the loops and at its
peak. The same request loops run in the same run against a PostgreSQL server from
Debian's packages (over its Unix socket, fsync off like the port's default; one
connection, so one backend) as the baseline, and ratios are printed.

    python3 bench/port_bench.py [--bin target/release/pglite-port]
"""
import argparse, glob, os, random, shutil, socket, statistics, struct, subprocess, sys, tempfile, threading, time

def msg(tag, body=b""):
    return tag + struct.pack(">I", len(body) + 4) + body

def query(sql):
    return msg(b"Q", sql.encode() + b"\0")

def bind_execute(statement, value):
    """Bind/Execute/Sync of a named statement with one text parameter, as pgbench -M prepared."""
    v = str(value).encode()
    bind = msg(b"B", b"\0" + statement + b"\0" + struct.pack(">HHI", 0, 1, len(v)) + v + struct.pack(">H", 0))
    return bind + msg(b"E", b"\0" + struct.pack(">I", 0)) + msg(b"S")

def extended(sql):
    parse = msg(b"P", b"\0" + sql.encode() + b"\0" + struct.pack(">H", 0))
    bind = msg(b"B", b"\0\0" + struct.pack(">HHH", 0, 0, 0))
    return parse + bind + msg(b"D", b"P\0") + msg(b"E", b"\0" + struct.pack(">I", 0)) + msg(b"S")

class PortConn:
    """Frames over the port's pipes."""
    def __init__(self, binary, env):
        self.p = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0)
        self.buf = b""
        self.read_until_ready()

    def send(self, data):
        self.p.stdin.write(struct.pack(">I", len(data)) + data)

    def read_until_ready(self):
        """Drops the replies up to and including the next ReadyForQuery."""
        self.skip_ready(1)

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.p.stdout.read(n - len(out))
            if not chunk:
                raise RuntimeError("port closed")
            out += chunk
        return out

    def more(self):
        """Reads the next frame's bytes into the buffer."""
        hdr = self._read(4)
        self.buf += self._read(struct.unpack(">I", hdr)[0])

    def messages_until_ready(self):
        """The messages up to and including the next ReadyForQuery, as (tag, body)."""
        out = []
        while True:
            if len(self.buf) >= 5:
                (l,) = struct.unpack(">I", self.buf[1:5])
                if len(self.buf) >= 1 + l:
                    tag, body, self.buf = self.buf[:1], self.buf[5:1 + l], self.buf[1 + l:]
                    out.append((tag, body))
                    if tag == b"Z":
                        return out
                    continue
            self.more()

    def skip_ready(self, n):
        """Reads and drops messages until n ReadyForQuery have gone by. The buffer is cut
        only when more must be read: cut per message, each cut would copy the rest of a
        64 KB read, and the reader could become what is measured."""
        pos = 0
        while n:
            if len(self.buf) - pos >= 5:
                (l,) = struct.unpack_from(">I", self.buf, pos + 1)
                if len(self.buf) - pos >= 1 + l:
                    n -= self.buf[pos] == 0x5A  # Z
                    pos += 1 + l
                    continue
            self.buf, pos = self.buf[pos:], 0
            self.more()
        self.buf = self.buf[pos:]

    def scalar(self, sql):
        """The first column of the first row of a query's result, as text."""
        self.send(query(sql))
        for tag, body in self.messages_until_ready():
            if tag == b"D":
                (l,) = struct.unpack(">i", body[2:6])
                value = body[6:6 + l].decode()
        return value

    def rss_kb(self, field):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])

    def close(self):
        self.p.stdin.close()
        self.p.wait()

class SocketConn(PortConn):
    """The same protocol over a server's Unix socket (trust auth)."""
    def __init__(self, path, user, db):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.buf = b""
        body = struct.pack(">I", 196608) + b"user\0" + user.encode() + b"\0database\0" + db.encode() + b"\0\0"
        self.s.sendall(struct.pack(">I", len(body) + 4) + body)
        self.read_until_ready()

    def send(self, data):
        self.s.sendall(data)

    def more(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise RuntimeError("server closed")
        self.buf += chunk

    def close(self):
        self.s.close()

def round_trips(conn, payload, n=1000):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        conn.send(payload)
        conn.read_until_ready()
        times.append(time.perf_counter() - t)
    return statistics.median(times)

def inserts(conn, n=25000):
    conn.send(query("CREATE TABLE bench_ins (id int, v text)")); conn.read_until_ready()
    t = time.perf_counter()
    conn.send(query("BEGIN")); conn.read_until_ready()
    for i in range(n):
        conn.send(query(f"INSERT INTO bench_ins VALUES ({i}, 'row {i}')"))
        conn.read_until_ready()
    conn.send(query("COMMIT")); conn.read_until_ready()
    return time.perf_counter() - t

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

PGBENCH_TABLES = """
CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
INSERT INTO pgbench_accounts SELECT g, 1, 0, '' FROM generate_series(1, 100000) g;
CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
INSERT INTO pgbench_tellers SELECT g, 1, 0, '' FROM generate_series(1, 10) g;
CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));
INSERT INTO pgbench_branches VALUES (1, 0, '');
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
VACUUM ANALYZE"""

def tpcb_statements(rng):
    a, t, d = rng.randint(1, 100000), rng.randint(1, 10), rng.randint(-5000, 5000)
    return ["BEGIN", f"UPDATE pgbench_accounts SET abalance = abalance + {d} WHERE aid = {a}",
            f"SELECT abalance FROM pgbench_accounts WHERE aid = {a}",
            f"UPDATE pgbench_tellers SET tbalance = tbalance + {d} WHERE tid = {t}",
            f"UPDATE pgbench_branches SET bbalance = bbalance + {d} WHERE bid = 1",
            f"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({t}, 1, {a}, {d}, CURRENT_TIMESTAMP)", "END"]

def back_to_back(conn, backend_pid, requests, per_unit):
    """Writes every request at once (on a thread, as a pipe holds little) and reads the
    replies meanwhile: units per second and the backend's CPU µs per unit."""
    cpu, t = cpu_seconds(backend_pid), time.perf_counter()
    writer = threading.Thread(target=lambda: [conn.send(r) for r in requests])
    writer.start()
    conn.skip_ready(len(requests))
    writer.join()
    elapsed, cpu = time.perf_counter() - t, cpu_seconds(backend_pid) - cpu
    units = len(requests) / per_unit
    return units / elapsed, cpu * 1e6 / units

def pgbench_back_to_back(conn, backend_pid):
    """pgbench's -S (simple and prepared) and tpcb-like statements, back to back, on
    pgbench's tables at scale 1: {workload: (per second, CPU µs each)}."""
    conn.send(query(PGBENCH_TABLES)); conn.read_until_ready()
    conn.send(msg(b"P", b"s\0SELECT abalance FROM pgbench_accounts WHERE aid = $1\0" + struct.pack(">H", 0)) + msg(b"S"))
    conn.read_until_ready()
    rng = random.Random(1)
    aids = [rng.randint(1, 100000) for _ in range(20000)]
    return {
        "-S simple": back_to_back(conn, backend_pid, [query(f"SELECT abalance FROM pgbench_accounts WHERE aid = {a}") for a in aids], 1),
        "-S prepared": back_to_back(conn, backend_pid, [bind_execute(b"s", a) for a in aids], 1),
        "tpcb-like": back_to_back(conn, backend_pid, [query(s) for _ in range(3000) for s in tpcb_statements(rng)], 7),
    }

def start_time(binary, env):
    """Seconds to the ready frame, and from there to the reply of a SELECT 1 sent at once."""
    t = time.perf_counter()
    c = PortConn(binary, env)
    ready = time.perf_counter()
    c.send(query("SELECT 1"))
    c.read_until_ready()
    first = time.perf_counter() - ready
    c.close()
    return ready - t, first

def native_server():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not bins or os.geteuid() == 0 and shutil.which("runuser") is None:
        return None
    bindir = os.path.dirname(bins[-1])
    root = tempfile.mkdtemp(prefix="pgbench-native-")
    shutil.chown(root, "postgres") if os.geteuid() == 0 else None
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data, sock = os.path.join(root, "data"), root
    subprocess.run(as_pg + [f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(as_pg + [f"{bindir}/pg_ctl", "-D", data, "-w", "-l", os.path.join(root, "log"), "-o",
                    f"-k {sock} -c listen_addresses='' -c fsync=off -c shared_buffers=128MB", "start"], check=True, stdout=subprocess.DEVNULL)
    return bindir, data, root, as_pg, os.path.join(sock, ".s.PGSQL.5432")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/pglite-port")
    args = ap.parse_args()
    built = os.path.abspath(args.bin)
    env = dict(os.environ, PGLITE_DATA_DIR="memory://")

    install = tempfile.mkdtemp(prefix="pglite-install-")
    binary = os.path.join(install, "pglite-port")
    shutil.copy2(built, binary)
    t = time.perf_counter()
    subprocess.run([binary, "--precompile-to", os.path.join(install, "pglite-modules")], check=True, stderr=subprocess.DEVNULL)
    ahead = time.perf_counter() - t

    def first_start(binary):
        cache = tempfile.mkdtemp(prefix="pglite-cold-")
        try:
            return start_time(binary, dict(env, PGLITE_CACHE_DIR=cache))[0]
        finally:
            shutil.rmtree(cache)
    cold_shipped = first_start(binary)
    cold_compiling = first_start(built)
    starts = [start_time(binary, env) for _ in range(5)]
    warm = statistics.median(s for s, _ in starts)
    first_query = statistics.median(f for _, f in starts)

    port = PortConn(binary, env)
    # One round trip first: the port hands zero pages back in its first idle moments,
    # and drops its start-up mappings on a thread of its own meanwhile; idle means settled.
    round_trips(port, query("SELECT 1"), n=1)
    time.sleep(0.2)
    idle_rss = port.rss_kb("VmRSS:")
    p_select = round_trips(port, query("SELECT 1"))
    p_ext = round_trips(port, extended("SELECT 1"))
    p_ins = inserts(port)
    after_rss = port.rss_kb("VmRSS:")
    peak_rss = port.rss_kb("VmHWM:")
    p_b2b = pgbench_back_to_back(port, port.p.pid)
    b2b_peak_rss = port.rss_kb("VmHWM:")
    port.close()
    shutil.rmtree(install)

    native = native_server()
    n_select = n_ext = n_ins = n_b2b = None
    if native:
        bindir, data, root, as_pg, path = native
        try:
            conn = SocketConn(path, "postgres", "postgres")
            n_select = round_trips(conn, query("SELECT 1"))
            n_ext = round_trips(conn, extended("SELECT 1"))
            n_ins = inserts(conn)
            n_b2b = pgbench_back_to_back(conn, int(conn.scalar("SELECT pg_backend_pid()")))
            conn.close()
        finally:
            subprocess.run(as_pg + [f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop"], stdout=subprocess.DEVNULL)
            shutil.rmtree(root, ignore_errors=True)

    def ratio(ours, base):
        return f"{ours / base:.2f}x server" if base else "no baseline"
    print(f"pglite-port benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
    print(f"ahead-of-time compile (--precompile-to):  {ahead:.1f} s, once per build")
    print(f"first start on a machine (empty cache):   {cold_shipped:.2f} s with the modules beside the binary, {cold_compiling:.2f} s without (compiles)")
    print(f"warm start to ready frame (median of 5): {warm * 1000:.0f} ms")
    print(f"first SELECT 1 sent at the ready frame:  {first_query * 1000:.2f} ms (median of the same 5)")
    print(f"SELECT 1 round trip, median of 1000:      {p_select * 1e6:.1f} us  ({ratio(p_select, n_select)}; server {n_select * 1e6 if n_select else 0:.1f} us)")
    print(f"extended P/B/D/E/S round trip, median:    {p_ext * 1e6:.1f} us  ({ratio(p_ext, n_ext)}; server {n_ext * 1e6 if n_ext else 0:.1f} us)")
    print(f"25,000 single-row INSERTs, one txn:       {p_ins:.2f} s  ({ratio(p_ins, n_ins)}; server {n_ins or 0:.2f} s)")
    for workload, (rate, cpu) in p_b2b.items():
        unit = "transactions" if workload == "tpcb-like" else "queries"
        base = f"{rate / n_b2b[workload][0]:.2f}x the server's rate; server {n_b2b[workload][0]:,.0f}/s, {n_b2b[workload][1]:.0f} us" if n_b2b else "no baseline"
        print(f"back to back, {workload + ',':<13}           {rate:,.0f} {unit}/s, {cpu:.0f} us CPU each ({base})")
    print(f"RSS idle after start / after the loops:   {idle_rss / 1024:.0f} MB / {after_rss / 1024:.0f} MB (peak {peak_rss / 1024:.0f} MB)")
    print(f"peak RSS after the back-to-back runs:     {b2b_peak_rss / 1024:.0f} MB (the loops' table, pgbench's tables, 3,000 more history rows)")

if __name__ == "__main__":
    main()
