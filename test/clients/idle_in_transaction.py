"""idle_in_transaction_session_timeout set inside the transaction applies to it, as
on a server (psycopg's own tests set it after BEGIN): the session ends with FATAL
25P03 once it idles that long in the transaction. Set before BEGIN, the same."""
import time

import psycopg

for where in ("inside the transaction", "before BEGIN"):
    conn = psycopg.connect()
    if where == "before BEGIN":
        conn.autocommit = True
        conn.execute("SET idle_in_transaction_session_timeout = '100ms'")
        conn.autocommit = False
    conn.execute("SELECT 1")  # psycopg opens the transaction here
    if where == "inside the transaction":
        conn.execute("SET idle_in_transaction_session_timeout = 100")
    time.sleep(0.6)
    try:
        conn.execute("SELECT 2")
        print(f"{where}: still open")
    except psycopg.Error as e:
        fatal = next((line for line in str(e).splitlines() if "terminating" in line), str(e).strip())
        print(f"{where}: closed: {fatal.split('FATAL:  ')[-1]}")
