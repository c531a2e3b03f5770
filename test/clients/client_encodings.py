"""Client encodings other than UTF8, as on a server: a client that asks for one (in
its StartupMessage or with SET) sends and reads text in it (query text, parameters,
results in text and binary, COPY, error messages), convert() converts, a character
the encoding lacks is 22P05, and one client's encoding never changes what another
reads. Prints what each client sees."""
import psycopg

# A few characters each encoding has beyond ASCII.
SAMPLES = {
    "LATIN1": "café", "LATIN2": "łódź", "LATIN5": "dağ", "LATIN9": "5 €", "ISO_8859_5": "Жук",
    "ISO_8859_7": "λόγος", "ISO_8859_8": "שלום", "WIN1250": "łódź", "WIN1251": "Жук", "WIN1252": "5 € café",
    "WIN1253": "λόγος", "WIN1256": "عربي", "WIN866": "Жук", "WIN874": "ไทย", "KOI8R": "Жук", "KOI8U": "їжак",
    "EUC_JP": "日本語", "SJIS": "日本語", "EUC_JIS_2004": "日本語", "SHIFT_JIS_2004": "日本語",
    "EUC_KR": "한국어", "UHC": "한국어", "BIG5": "中文字", "GBK": "中文字",
    "GB18030": "中文字", "EUC_CN": "中文字",
}


def outcome(conn, sql, params=None, binary=False):
    try:
        cur = conn.cursor(binary=binary)
        cur.execute(sql, params)
        return cur.fetchone()[0] if cur.description else cur.statusmessage
    except psycopg.Error as e:
        return f"{e.sqlstate} {e.diag.message_primary}"


for encoding, text in SAMPLES.items():
    with psycopg.connect(autocommit=True, client_encoding=encoding) as conn:
        seen = [
            outcome(conn, "SHOW client_encoding"),
            outcome(conn, "SELECT %s::text || '!'", [text]),
            outcome(conn, "SELECT %s::text || '!'", [text], binary=True),
            outcome(conn, "SELECT length(%s), convert_to(%s, 'UTF8') = %s::bytea", [text, text, text.encode()]),
            outcome(conn, "SELECT encode(convert_to(%s, %s), 'hex')", [text, encoding]),
            outcome(conn, "SELECT convert_from(convert_to(%s, %s), %s)", [text, encoding, encoding]),
            outcome(conn, "SELECT chr(128512)"),
        ]
        conn.execute("CREATE TEMP TABLE copied (v text)")
        # The server's bytes for the text (Python's johab codec disagrees with PostgreSQL's).
        encoded = conn.execute("SELECT convert_to(%s, %s)", [text, encoding]).fetchone()[0]
        with conn.cursor().copy("COPY copied FROM STDIN") as copy:
            copy.write(encoded + b"\n")
        seen.append(outcome(conn, "SELECT v = %s FROM copied", [text]))
        with conn.cursor().copy("COPY copied TO STDOUT") as copy:
            seen.append(b"".join(bytes(chunk) for chunk in copy).hex())
        seen.append(outcome(conn, "DO $$BEGIN RAISE EXCEPTION '% here', %L; END$$".replace("%L", "'" + text + "'")))
        print(encoding, seen)

# Conversions with no Python codec (JOHAB's differs from PostgreSQL's) or between two
# encodings other than UTF8, on the server's side.
with psycopg.connect(autocommit=True) as conn:
    for text, source, target in [
        ("한국어", "UTF8", "JOHAB"), ("中文字", "UTF8", "EUC_TW"), ("日本語", "EUC_JP", "SJIS"),
        ("日本語", "EUC_JIS_2004", "SHIFT_JIS_2004"), ("中文字", "EUC_TW", "BIG5"), ("łódź", "LATIN2", "WIN1250"),
        ("Жук", "KOI8R", "WIN1251"), ("Жук", "ISO_8859_5", "WIN866"), ("café", "LATIN1", "MULE_INTERNAL"),
        ("日本語", "EUC_JP", "MULE_INTERNAL"), ("中文字", "EUC_CN", "MULE_INTERNAL"), ("한국어", "EUC_KR", "MULE_INTERNAL"),
        ("中文字", "BIG5", "MULE_INTERNAL"), ("Жук", "KOI8R", "MULE_INTERNAL"), ("café", "UTF8", "MULE_INTERNAL"),
    ]:
        sql = "SELECT encode(convert(convert_to(%s, %s), %s, %s), 'hex')"
        there = outcome(conn, sql, [text, source, source, target])
        back = outcome(conn, "SELECT convert_from(convert(decode(%s, 'hex'), %s, %s), %s)", [there, target, source, source])
        print(f"{source} to {target}:", there, back)

# A client that sends bytes its encoding does not have gets the server's 22021.
with psycopg.connect(autocommit=True, client_encoding="SJIS") as conn:
    cur = conn.cursor()
    try:
        cur.execute(b"SELECT '\x81'")
        print("a lone SJIS lead byte:", cur.fetchone())
    except psycopg.Error as e:
        print("a lone SJIS lead byte:", e.sqlstate, e.diag.message_primary)

# Two clients at once, each in its own encoding.
a = psycopg.connect(autocommit=True, client_encoding="LATIN1")
b = psycopg.connect(autocommit=True)
b.execute("CREATE TABLE enc_wall (id int, v text)")
a.execute("INSERT INTO enc_wall VALUES (1, %s)", ["é"])
b.execute("INSERT INTO enc_wall VALUES (2, %s)", ["€"])
print("b reads:", b.execute("SELECT v FROM enc_wall ORDER BY id").fetchall(), b.info.encoding)
print("a reads its own:", outcome(a, "SELECT v FROM enc_wall WHERE id = 1"), a.info.encoding)
print("a reads b's:", outcome(a, "SELECT v FROM enc_wall WHERE id = 2"))
print("each keeps its own:", outcome(a, "SHOW client_encoding"), outcome(b, "SHOW client_encoding"))
a.execute("SET client_encoding TO 'WIN1252'")
print("a in WIN1252 reads b's:", outcome(a, "SELECT v FROM enc_wall WHERE id = 2"), a.info.encoding)
print("b meanwhile:", outcome(b, "SELECT string_agg(v, ',' ORDER BY id) FROM enc_wall"), b.info.encoding)
a.execute("RESET client_encoding")
print("a after RESET:", outcome(a, "SHOW client_encoding"), a.info.encoding)
# a's session keeps text beyond ASCII while b's turns come between (the front end puts
# a's settings back, and drops its TEMP table when it leaves, in any encoding).
a.execute('SET search_path TO "schéma", public')
a.execute('CREATE TEMP TABLE "tëmp" (v text)')
a.execute('INSERT INTO "tëmp" VALUES (%s)', ["ü"])
print("b between:", outcome(b, "SHOW search_path"))
print("a's own again:", outcome(a, "SHOW search_path"), outcome(a, 'SELECT v FROM "tëmp"'))
a.execute("BEGIN")
a.execute("SET LOCAL client_encoding TO 'UTF8'")
print("SET LOCAL in a transaction:", outcome(a, "SELECT v FROM enc_wall WHERE id = 2"), a.info.encoding)
a.execute("COMMIT")
print("after COMMIT:", outcome(a, "SHOW client_encoding"), a.info.encoding)
print("an encoding with no conversion:", outcome(a, "SET client_encoding TO 'MULE_INTERNAL'"))
print("one that does not exist:", outcome(a, "SET client_encoding TO 'KLINGON'"))
b.execute("LISTEN enc_channel")
a.execute("NOTIFY enc_channel, 'café'")
print("b's notification from a in LATIN1:", [n.payload for n in b.notifies(timeout=5, stop_after=1)])
a.execute("LISTEN enc_channel")
b.execute("NOTIFY enc_channel, 'déjà vu'")
print("a's from b in UTF8:", [n.payload for n in a.notifies(timeout=5, stop_after=1)])
b.execute("DROP TABLE enc_wall")

# One it cannot hold in its encoding ends the listener's connection (the server's
# FATAL), and nobody else's.
c = psycopg.connect(autocommit=True, client_encoding="LATIN1")
c.execute("LISTEN enc_fatal")
b.execute("NOTIFY enc_fatal, 'Жук'")
try:
    print("c gets one it cannot read:", [n.payload for n in c.notifies(timeout=5, stop_after=1)])
except psycopg.Error as e:
    print("c gets one it cannot read:", type(e).__name__, "closed", c.closed)
print("b and a go on:", outcome(b, "SELECT 1"), outcome(a, "SELECT 2"))
