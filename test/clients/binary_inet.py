"""inet and cidr in the binary format carry the address family byte every server
sends (2 for IPv4, 3 for IPv6), both ways: results, parameters and binary COPY, with
psycopg in binary and text modes. Prints a transcript to compare with a server's."""
import ipaddress
import struct

import psycopg

from wire_client import cstr, fields, login, message, recv_message

values = ["1.2.3.4", "1.2.3.4/32", "10.0.0.0/8", "192.168.1.5/24", "::1", "2001:db8::/32", "::ffff:1.2.3.4/120"]
with psycopg.connect(autocommit=True) as conn:
    conn.execute("CREATE TEMP TABLE nets (i inet, c cidr)")
    for binary in (True, False):
        cur = conn.cursor(binary=binary)
        for v in values:
            c = str(ipaddress.ip_network(v, strict=False))
            i, cc, sent = cur.execute("SELECT %s::inet, %s::cidr, encode(inet_send(%s::inet), 'hex')", [v, c, v]).fetchone()
            print(f"{'binary' if binary else 'text'} result {v}: {i!r} {cc!r} {sent}")
    # Binary parameters: psycopg sends ipaddress objects in binary with %b.
    cur = conn.cursor()
    for v in values:
        addr = ipaddress.ip_interface(v)
        net = ipaddress.ip_network(v, strict=False)
        cur.execute("INSERT INTO nets VALUES (%b, %b)", [addr, net])
        print(f"binary parameter {v}:", cur.execute("SELECT i::text, c::text FROM nets ORDER BY ctid DESC LIMIT 1").fetchone())
    # Binary COPY out, then in again.
    with cur.copy("COPY nets TO STDOUT (FORMAT binary)") as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    cur.execute("TRUNCATE nets")
    with cur.copy("COPY nets FROM STDIN (FORMAT binary)") as copy:
        copy.write(data)
    print("binary COPY round trip:", [r[0] for r in cur.execute("SELECT i::text FROM nets ORDER BY i")])
    print("binary COPY bytes:", data.hex()[:120])

# Raw protocol: a binary inet parameter with family byte 2 (IPv4, as every client
# sends) is taken; 1 (what the WASI build used to send) is refused, as by a server.
s = login()
for family in (2, 1):
    value = bytes([family, 32, 0, 4, 1, 2, 3, 4])
    s.sendall(
        message(b"P", cstr("") + cstr("SELECT $1::text") + struct.pack(">HI", 1, 869))
        + message(b"B", cstr("") + cstr("") + struct.pack(">HHHI", 1, 1, 1, len(value)) + value + struct.pack(">H", 0))
        + message(b"E", cstr("") + struct.pack(">I", 0))
        + message(b"S")
    )
    said = []
    while True:
        tag, body = recv_message(s)
        if tag == b"D":
            said.append(body[6:].decode())
        elif tag == b"E":
            said.append(fields(body)["C"] + " " + fields(body)["M"])
        elif tag == b"Z":
            break
    print(f"raw binary parameter with family byte {family}:", said)
