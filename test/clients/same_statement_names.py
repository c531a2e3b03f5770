"""Two psycopg 3 connections that prepare statements under the same names (_pg3_0...)
at the same time, interleaved."""
import psycopg

a = psycopg.connect(autocommit=True, prepare_threshold=0)
b = psycopg.connect(autocommit=True, prepare_threshold=0)
results = []
for i in range(5):
    results.append(a.execute("SELECT %s::int * 2", [i]).fetchone()[0])
    results.append(b.execute("SELECT %s::text || '!'", [str(i)]).fetchone()[0])
names_a = sorted(r[0] for r in a.execute("SELECT name FROM pg_prepared_statements").fetchall())
print("results", results)
print("prepared", len(names_a) > 0)
a.close()
b.close()
