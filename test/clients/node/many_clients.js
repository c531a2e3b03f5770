// node-postgres against one instance: an idle listener gets notifications, settings stay
// per client (SET, and statement_timeout given at connect), and a pool of ten clients
// runs transactions at once. Prints one line per check.
const { Client, Pool } = require("pg");

async function main() {
  const listener = new Client();
  const talker = new Client();
  const timed = new Client({ statement_timeout: 300, application_name: "timed" });
  await Promise.all([listener.connect(), talker.connect(), timed.connect()]);

  const heard = new Promise((resolve) => listener.on("notification", resolve));
  await listener.query("LISTEN node_events");
  await talker.query("SELECT pg_notify('node_events', 'from node')");
  const n = await Promise.race([heard, new Promise((r) => setTimeout(() => r(null), 3000))]);
  console.log("idle listener heard", n && n.channel, n && n.payload, n && n.processId === talker.processID);

  await talker.query("SET TimeZone = 'America/New_York'");
  const mine = (await talker.query("SHOW TimeZone")).rows[0].TimeZone;
  const theirs = (await listener.query("SHOW TimeZone")).rows[0].TimeZone;
  console.log("TimeZone talker", mine, "listener", theirs);

  console.log("timed statement_timeout", (await timed.query("SHOW statement_timeout")).rows[0].statement_timeout);
  try {
    await timed.query("SELECT count(*) FROM generate_series(1, 300000000)");
    console.log("timed: finished");
  } catch (e) {
    console.log("timed:", e.code, e.message);
  }
  console.log("talker statement_timeout", (await talker.query("SHOW statement_timeout")).rows[0].statement_timeout);

  const pool = new Pool({ max: 10 });
  await pool.query("CREATE TABLE IF NOT EXISTS node_counter (n int)");
  await pool.query("INSERT INTO node_counter VALUES (0)");
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      const c = await pool.connect();
      try {
        await c.query("BEGIN");
        await c.query("UPDATE node_counter SET n = n + 1");
        await c.query("COMMIT");
      } finally {
        c.release();
      }
    })
  );
  console.log("pool counter", (await pool.query("SELECT n FROM node_counter")).rows[0].n);
  await pool.end();
  await Promise.all([listener.end(), talker.end(), timed.end()]);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  }
);
