defmodule Pglite.SharingTest do
  @moduledoc """
  Many clients, one backend: turns are whole units, transactions are not interleaved,
  names do not collide, and a client that dies mid-way frees the backend.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  setup do
    {:ok, pg} = Pglite.start_link()
    {_, 0} = psql(pg, "CREATE TABLE ledger (id int PRIMARY KEY, note text)")
    %{pg: pg}
  end

  test "a second client waits while the first is in a transaction and never sees its uncommitted rows", %{pg: pg} do
    {holder, os_pid} = open_psql(pg)
    Port.command(holder, "BEGIN;\nINSERT INTO ledger VALUES (1, 'uncommitted');\nSELECT 'inserted';\n")
    await_output(holder, "inserted")

    reader = Task.async(fn -> psql(pg, "SELECT count(*) FROM ledger") end)
    refute Task.yield(reader, 1_000), "the reader must wait while the other transaction is open"

    Port.command(holder, "ROLLBACK;\n\\q\n")
    assert {"0\n", 0} = Task.await(reader, 15_000)
    kill9(os_pid)
  end

  test "a client killed mid-transaction, or inside a failed one, frees the backend and its work is rolled back", %{pg: pg} do
    for {id, script, printed} <- [
          {2, "SELECT 'inserted';", "inserted"},
          {3, "SELECT 1/0;\nSELECT 'failed';", "current transaction is aborted"}
        ] do
      {holder, os_pid} = open_psql(pg)
      Port.command(holder, "BEGIN;\nINSERT INTO ledger VALUES (#{id}, 'doomed');\n#{script}\n")
      await_output(holder, printed)
      kill9(os_pid)

      assert {"0\n", 0} = psql(pg, "SELECT count(*) FROM ledger WHERE id = #{id}")
      assert {_, 0} = psql(pg, "INSERT INTO ledger VALUES (#{id}, 'fine')")
    end
  end

  test "a client that vanishes in any state (pipeline error, failed transaction, COPY either way, asleep, settings changed) frees the backend at once and leaves nothing of its session",
       %{pg: pg} do
    {out, 0} = python(pg, "vanished_holders")

    for case <- ~w(pipeline_error_without_sync parse_error_and_flush failed_transaction failed_in_a_savepoint
                   copy_out_mid_stream copy_in_inside_a_transaction asleep_inside_a_transaction settings_changed_without_sync
                   settings_changed_then_asleep) do
      assert out =~ ~s(#{case}: served, rows kept 0, waited <1s, settings UTF8 "$user", public), out
    end
  end

  test "a client killed mid-COPY frees the backend and nothing of the COPY remains", %{pg: pg} do
    {holder, os_pid} = open_psql(pg)
    Port.command(holder, "COPY ledger FROM STDIN;\n")
    Port.command(holder, "10\tten\n11\televen\n")
    Process.sleep(300)
    kill9(os_pid)

    assert {"0\n", 0} = psql(pg, "SELECT count(*) FROM ledger WHERE id >= 10")
    assert {"1\n", 0} = psql(pg, "INSERT INTO ledger VALUES (12, 'x'); SELECT count(*) FROM ledger WHERE id >= 10")
  end

  test "two clients may prepare statements with the same names", %{pg: pg} do
    {out, status} = python(pg, "same_statement_names")
    assert status == 0, out
    assert out =~ "results [0, '0!', 2, '1!', 4, '2!', 6, '3!', 8, '4!']"
  end

  test "psycopg evicting statements from its cache (DEALLOCATE in SQL) drops its own, never another client's of the same name",
       %{pg: pg} do
    assert {out, 0} = python(pg, "statement_cache")
    assert out =~ "libpq 15" and out =~ "ok"
  end

  test "the extended protocol with binary parameters (psycopg 3)", %{pg: pg} do
    {out, status} = python(pg, "extended_binary")
    assert status == 0, out
    assert out =~ "rows (40, Decimal('1830.0'))"
    assert out =~ "bytea 100"
    assert out =~ "error 22012"
    assert out =~ "after 42"
  end

  test "twenty clients at once each get their own answers", %{pg: pg} do
    results =
      1..20
      |> Task.async_stream(fn i -> psql(pg, "SELECT #{i} * 2") end, max_concurrency: 20, timeout: 60_000)
      |> Enum.map(fn {:ok, {out, 0}} -> String.trim(out) end)

    assert results == Enum.map(1..20, &to_string(&1 * 2))
  end
end
