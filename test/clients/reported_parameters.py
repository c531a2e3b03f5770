"""What a server reports at start-up is the backend's value of a setting, not the
text the client sent: DateStyle 'iso,dmy' is reported as 'ISO, DMY', client_encoding
'utf8' as 'UTF8', TimeZone 'europe/rome' as 'Europe/Rome'. An invalid setting is a
FATAL error at connection. Prints a transcript to compare with a server's."""
import datetime

import psycopg

cases = [
    ("DateStyle", {"options": "-c DateStyle=iso,dmy"}),
    ("client_encoding", {"client_encoding": "utf8"}),
    ("TimeZone", {"options": "-c TimeZone=europe/rome"}),
    ("IntervalStyle", {"options": "-c IntervalStyle=POSTGRES_verbose"}),
    # PostgreSQL 16 and later escape the bytes (caf\xc3\xa9), 15 replaced them (caf??).
    ("application_name", {"application_name": "caf\u00e9"}),
]
for name, kwargs in cases:
    with psycopg.connect(**kwargs) as conn:
        print(f"{name} {list(kwargs.values())[0]!r}: reported {conn.info.parameter_status(name)!r}")

# psycopg refused dates under a DateStyle reported as sent ("unexpected DateStyle").
with psycopg.connect(options="-c DateStyle=iso,dmy") as conn:
    print("date under iso,dmy:", conn.execute("SELECT '2024-03-01'::date").fetchone()[0] == datetime.date(2024, 3, 1))

# The same settings twice: reported the same way the second time.
for _ in range(2):
    with psycopg.connect(options="-c DateStyle=sql,dmy") as conn:
        print("DateStyle sql,dmy:", conn.info.parameter_status("DateStyle"))

for bad in ["-c DateStyle=nonsense", "-c no_such_setting=1"]:
    try:
        psycopg.connect(options=bad).close()
        print(f"{bad}: connected")
    except psycopg.OperationalError as e:
        fatal = next(line for line in str(e).splitlines() if "FATAL:" in line)
        print(f"{bad}: refused:", fatal.split("FATAL:  ")[-1])

with psycopg.connect() as conn:
    print("a plain client after them:", conn.execute("SELECT 'fine'").fetchone()[0], conn.info.parameter_status("DateStyle"))
