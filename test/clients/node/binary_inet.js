// node-postgres, results in the binary format (`binary: true`): an inet or cidr value
// arrives as the server's bytes, family byte 2 for IPv4 and 3 for IPv6; in text, as
// the address. Prints one line per value.
const { Client } = require("pg");

async function main() {
  const client = new Client();
  await client.connect();
  for (const v of ["1.2.3.4/32", "10.0.0.0/8", "::1/128", "2001:db8::/32"]) {
    const binary = await client.query({ text: "SELECT $1::inet AS i, $1::cidr AS c", values: [v], binary: true });
    const text = await client.query({ text: "SELECT $1::inet AS i", values: [v] });
    const hex = (x) => Buffer.from(x).toString("hex");
    console.log(v, "binary", hex(binary.rows[0].i), hex(binary.rows[0].c), "text", text.rows[0].i);
  }
  await client.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
