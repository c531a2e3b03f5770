"""Each connection keeps its own session: SET, RESET, set_config(..., false) (custom
settings too) and the settings of its StartupMessage; ParameterStatus reaches only the connection concerned.
Prints one line per check: name, what this connection saw."""
import psycopg

a = psycopg.connect(autocommit=True)
b = psycopg.connect(autocommit=True)
c = psycopg.connect(autocommit=True, options="-c search_path=elsewhere -c DateStyle=SQL,DMY", application_name="gamma")


def show(conn, name):
    return conn.execute(f"SHOW {name}").fetchone()[0]


a.execute("SET TimeZone = 'Asia/Tokyo'")
a.execute("SET DateStyle = 'German'")
a.execute("SET statement_timeout = 1234")
a.execute("SELECT set_config('search_path', '', false)")
a.execute("SET application_name = 'alpha'")

for conn, who in [(a, "a"), (b, "b"), (c, "c")]:
    for name in ["TimeZone", "DateStyle", "statement_timeout", "search_path", "application_name"]:
        print(who, name, repr(show(conn, name)))
    print(who, "reported TimeZone", conn.info.parameter_status("TimeZone"))
    print(who, "reported application_name", conn.info.parameter_status("application_name"))

# Custom settings (row-level security's app.tenant...) are a session's too.
a.execute("SET app.tenant = 'acme'")
a.execute("SELECT set_config('app.user_id', '42', false)")
print("b custom", b.execute("SELECT coalesce(nullif(current_setting('app.tenant', true), ''), 'unset')").fetchone()[0])
print("a custom", show(a, "app.tenant"), show(a, "app.user_id"))

a.execute("RESET TimeZone")
print("a after RESET TimeZone", show(a, "TimeZone"))
a.execute("RESET ALL")
print("a after RESET ALL", show(a, "statement_timeout"), repr(show(a, "search_path")))
print("c still", repr(show(c, "search_path")))
for conn in (a, b, c):
    conn.close()
