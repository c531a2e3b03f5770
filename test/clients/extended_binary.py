"""psycopg 3: the extended protocol with binary parameters and results."""
import psycopg

with psycopg.connect() as conn:
    with conn.cursor(binary=True) as cur:
        cur.execute("CREATE TABLE items (id int PRIMARY KEY, name text, price numeric, data bytea)")
        cur.executemany(
            "INSERT INTO items VALUES (%b, %b, %b, %b)",
            [(i, f"item {i}", i * 1.5, bytes([i % 256]) * 100) for i in range(1, 51)],
        )
        cur.execute("SELECT count(*), sum(price) FROM items WHERE id > %b", [10])
        print("rows", cur.fetchone())
        cur.execute("SELECT data FROM items WHERE id = %b", [7])
        print("bytea", len(cur.fetchone()[0]))
        try:
            cur.execute("SELECT 1 / %b", [0])
        except psycopg.errors.DivisionByZero as e:
            print("error", e.sqlstate)
        conn.rollback()
        cur.execute("SELECT %b::int + 1", [41])
        print("after", cur.fetchone()[0])
