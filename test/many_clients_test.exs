defmodule Pglite.ManyClientsTest do
  @moduledoc """
  Many clients like a real server: each keeps its own session, notifications reach
  their listeners, cancels and timeouts work, and no client can wedge the others.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @moduletag timeout: 180_000

  setup do
    {:ok, pg} = Pglite.start_link(idle_in_transaction_timeout: 1_000)
    %{pg: pg}
  end

  test "one client's set_config('search_path', '', false) changes nobody else's; pgbench -i still works", %{pg: pg} do
    {pg_dump_like, os_pid} = open_psql(pg)
    Port.command(pg_dump_like, "SELECT set_config('search_path', '', false);\nSELECT 'emptied';\n")
    await_output(pg_dump_like, "emptied")

    assert {~s("$user", public\n), 0} = psql(pg, "SHOW search_path")
    assert {_, 0} = pgbench(pg, ["-i", "-s", "1", "-q"])

    Port.command(pg_dump_like, "SELECT 'mine:' || current_setting('search_path');\n")
    assert await_output(pg_dump_like, ~r/mine:\S*\n/) =~ "mine:\n"
    kill9(os_pid)
  end

  test "SET, RESET and StartupMessage settings stay with their client; ParameterStatus reaches only it", %{pg: pg} do
    {out, 0} = python(pg, "session_state")

    assert_prints(out, [
          "a TimeZone 'Asia/Tokyo'",
          "a DateStyle 'German, DMY'",
          "a statement_timeout '1234ms'",
          "a search_path ''",
          "a reported TimeZone Asia/Tokyo",
          "a reported application_name alpha",
          "b TimeZone 'UTC'",
          "b DateStyle 'ISO, MDY'",
          "b statement_timeout '0'",
          ~s(b search_path '"$user", public'),
          "b reported TimeZone UTC",
          "b reported application_name \n",
          "c DateStyle 'SQL, DMY'",
          "c search_path 'elsewhere'",
          "c application_name 'gamma'",
          "c reported TimeZone UTC",
          "b custom unset",
          "a custom acme 42",
          "a after RESET TimeZone UTC",
          ~s(a after RESET ALL 0 '"$user", public'),
          "c still 'elsewhere'"
        ])
  end

  test "a client's TEMP tables, PREPAREd statements and WITH HOLD cursors are dropped when it disconnects; server-side cursors work",
       %{pg: pg} do
    {out, 0} = python(pg, "session_objects")
    assert out =~ "a reads its temp table 2"
    assert out =~ "a executes its statement 42"
    assert out =~ "a fetches its cursor 1"
    assert out =~ "left after a disconnected (0, 0, 0)"
    assert out =~ "b may reuse the name 0"
    assert out =~ "server-side cursor rows 1000"
  end

  test "the notifications of one transaction arrive together, in one write, as from a server", %{pg: pg} do
    {out, 0} = python(pg, "notify_batch")
    assert out =~ "rounds whose two notifications came in one read: 20 of 20"
  end

  test "NOTIFY reaches every client listening on the channel, and only those, whoever sends it; a rolled-back LISTEN is not kept; each client has its own id",
       %{pg: pg} do
    {out, 0} = python(pg, "listen_notify")
    assert out =~ "listener got [('jobs', 'hello')]"
    assert out =~ "pid is the notifier's True"
    assert out =~ "other got []"
    assert out =~ "second got []"
    assert out =~ "second got [('Jobs Two', 'in a transaction')]"
    assert out =~ "second got [('jobs', 'again')]"
    assert out =~ "listener got after UNLISTEN []"
    assert out =~ "second got [('failed', 'f'), ('rolled', 'r')]"
    assert out =~ "other got after its LISTENs rolled back []"
    assert out =~ "channels left 0"
    assert out =~ "BackendKeyData ids distinct True"
    assert out =~ "pg_backend_pid() [1]"
  end

  test "requests queued right behind another client's get their own replies, in order; a cancel or disconnect hits only its own",
       %{pg: pg} do
    {out, 0} = python(pg, "queued_behind")
    assert out =~ "misrouted replies: 0 []"
    assert out =~ "holder: 5000000 canceled behind it: 57014"
    assert out =~ "holder after a disconnect behind it: 5000000 next: served"

    assert out =~
             "pipelined behind a holder: [('TUPLES_OK', 'first'), ('PIPELINE_SYNC', None), ('COMMAND_OK', None), ('PIPELINE_SYNC', None)]"

    assert out =~
             "pipelined holder: [('TUPLES_OK', '5000000'), ('PIPELINE_SYNC', None), ('COMMAND_OK', None), ('PIPELINE_SYNC', None)] behind it: behind"
  end

  test "a CancelRequest cancels the running statement, asleep or not, with 57014; statement_timeout too; the connection goes on",
       %{pg: pg} do
    {out, 0} = python(pg, "cancel")
    assert out =~ "cancel: 57014 canceling statement due to user request"
    assert out =~ "after cancel: 1"
    assert out =~ "statement_timeout: 57014 canceling statement due to statement timeout"
    assert out =~ "quick under the timeout: 2"
    # A sleeping statement is woken for its cancel, as a server's would be.
    assert [_, seconds] = Regex.run(~r/sleep canceled: 57014 canceling statement due to user request after ([\d.]+) s/, out)
    assert String.to_float(seconds) < 10
    assert [_, seconds] = Regex.run(~r/sleep timed out: 57014 canceling statement due to statement timeout after ([\d.]+) s/, out)
    assert String.to_float(seconds) < 10
    # ... and no later sleep is cut short by it.
    assert [_, seconds] = Regex.run(~r/a short sleep sleeps: finished after ([\d.]+) s/, out)
    assert String.to_float(seconds) >= 0.2
  end

  test "JDBC: prepared statements with the same names on two connections, batches, a cursor, a query timeout, NOTIFY, metadata" do
    {:ok, pg} = Pglite.start_link(tcp_port: 0)
    {out, 0} = jdbc(pg, "ManyClients")

    assert_prints(out, [
          "prepared in turns: 1b0! 2b1! 3b2! 4b3! 5b4! 6b5!",
          "TimeZone a Asia/Tokyo b ",
          "application_name a alpha b beta",
          "batch inserted 250",
          "b sees 250",
          "fetched in chunks 250 sum 31437.50",
          "error 22012",
          "then 25P02",
          "after rollback 2",
          "timeout 57014 in time",
          "b goes on 3",
          "notified jdbc_events from beta",
          "tables jdbc_items",
          "columns 4",
          "server PostgreSQL 17"
        ])
  end

  test "node-postgres: an idle listener hears NOTIFY, settings stay per client, a pool of ten commits every update",
       %{pg: pg} do
    {out, 0} = node(pg, "many_clients")
    assert out =~ "idle listener heard node_events from node true"
    assert out =~ "TimeZone talker America/New_York listener UTC"
    assert out =~ "timed statement_timeout 300ms"
    assert out =~ "timed: 57014 canceling statement due to statement timeout"
    assert out =~ "talker statement_timeout 0"
    assert out =~ "pool counter 50"
  end

  test "a client idle in a transaction while others wait gets FATAL 25P03 and the others go on", %{pg: pg} do
    {:ok, _} = Pglite.query(pg, "CREATE TABLE ledger (id int)")
    {idle, os_pid} = open_psql(pg)
    Port.command(idle, "BEGIN;\nINSERT INTO ledger VALUES (1);\nSELECT 'holding';\n")
    await_output(idle, "holding")

    assert {"0\n", 0} = psql(pg, "SELECT count(*) FROM ledger")
    Port.command(idle, "SELECT 'still here?';\n")
    assert await_output(idle, ~r/terminating connection due to idle-in-transaction timeout|server closed/)
    kill9(os_pid)
  end

  test "a client's own idle_in_transaction_session_timeout ends its session even when nobody waits", %{pg: pg} do
    {idle, os_pid} = open_psql(pg)
    Port.command(idle, "SET idle_in_transaction_session_timeout = 300;\nBEGIN;\nSELECT 'begun';\n")
    await_output(idle, "begun")
    Process.sleep(800)
    Port.command(idle, "SELECT 'still here?';\n")
    assert await_output(idle, ~r/idle-in-transaction timeout|server closed/)
    kill9(os_pid)
  end

  test "idle_in_transaction_session_timeout set inside the transaction ends the session as on a server", %{pg: pg} do
    {ours, theirs} = transcripts(pg, "idle_in_transaction")
    assert ours == theirs
    assert "inside the transaction: closed: terminating connection due to idle-in-transaction timeout" in ours
  end

  test "a client idle in COPY while others wait is disconnected and its rows are not kept", %{pg: pg} do
    {:ok, _} = Pglite.query(pg, "CREATE TABLE ledger (id int)")
    {copier, os_pid} = open_psql(pg)
    Port.command(copier, "COPY ledger FROM STDIN;\n1\n2\n")
    Process.sleep(300)

    assert {"0\n", 0} = psql(pg, "SELECT count(*) FROM ledger")
    kill9(os_pid)
  end

  test "while one client holds a transaction, another's statement_timeout and lock_timeout count its wait", %{pg: pg} do
    {:ok, pg} = restart_without_idle_timeout(pg)
    {waiter, waiter_pid} = open_psql(pg)
    Port.command(waiter, "SET statement_timeout = 300;\nSELECT 'ready';\n")
    await_output(waiter, "ready")
    {holder, holder_pid} = open_psql(pg)
    Port.command(holder, "BEGIN;\nSELECT 'holding';\n")
    await_output(holder, "holding")

    Port.command(waiter, "SELECT 'ran';\n")
    assert await_output(waiter, "canceling statement due to statement timeout") =~ "ERROR"
    Port.command(waiter, "SET statement_timeout = 0;\n")
    Port.command(holder, "COMMIT;\nSELECT 'released';\n")
    await_output(holder, "released")
    Port.command(waiter, "SET lock_timeout = 300;\nSELECT 'ready again';\n")
    await_output(waiter, "ready again")
    Port.command(holder, "BEGIN;\nSELECT 'holding again';\n")
    await_output(holder, "holding again")
    Port.command(waiter, "SELECT 'ran';\n")
    assert await_output(waiter, "canceling statement due to lock timeout") =~ "ERROR"

    Port.command(holder, "COMMIT;\n")
    Port.command(waiter, "SELECT 'served after all';\n")
    await_output(waiter, "served after all")
    kill9(waiter_pid)
    kill9(holder_pid)
  end

  test "garbage, a half message, an idle Flush or a disconnect mid-COPY from one client: a clear error for it, the others and the data untouched",
       %{pg: pg} do
    {out, 0} = python(pg, "raw_protocol")
    assert out =~ "unknown message type: FATAL 08P01 invalid frontend message type 63"
    assert out =~ ~s(impossible length: FATAL 08P01 invalid message length 3 for message type "Q")
    assert out =~ "copy started: b'G'"
    assert out =~ "flushed: [b'1', b'2', b'D', b'C']"
    assert out =~ "others still served: served"
    assert out =~ "idle after Flush: FATAL 25P03"
    assert out =~ "rows kept: 1"
    assert out =~ "good client still works: yes"
  end

  test "pgbench with 100 clients, and a mixed script of SET, transactions and NOTIFY: 0 failures", %{pg: pg} do
    {_, 0} = pgbench(pg, ["-i", "-s", "1", "-q"])
    {out, 0} = pgbench(pg, ["-c", "100", "-j", "2", "-t", "20"])
    assert out =~ "number of transactions actually processed: 2000/2000"
    assert out =~ "number of failed transactions: 0 (0.000%)"

    script = Path.expand("pgbench/mixed.sql", __DIR__)
    {out, 0} = pgbench(pg, ["-c", "100", "-j", "2", "-t", "5", "-f", script])
    assert out =~ "number of transactions actually processed: 500/500"
    assert out =~ "number of failed transactions: 0 (0.000%)"
    # Nobody's settings leaked into the instance.
    assert {~s("$user", public\n), 0} = psql(pg, "SHOW search_path")
  end

  defp restart_without_idle_timeout(pg) do
    Pglite.stop(pg)
    Pglite.start_link(idle_in_transaction_timeout: 0)
  end

  # Every line a client program must have printed.
  defp assert_prints(out, lines), do: for(line <- lines, do: assert(out =~ line, "expected #{inspect(line)} in:\n#{out}"))
end
