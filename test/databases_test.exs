defmodule Pglite.DatabasesTest do
  @moduledoc """
  An instance serves every database of its cluster, one at a time, as `mix ecto.create`,
  `mix ecto.drop` and a repo need: psql, as against a server.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  setup do
    {:ok, pg} = Pglite.start_link([])
    %{pg: pg}
  end

  test "a database created from postgres is served to its clients, then dropped from postgres, as on a server", %{pg: pg} do
    assert {_, 0} = psql(pg, "CREATE DATABASE app_test")
    sql = "CREATE TABLE posts (id int); INSERT INTO posts VALUES (1); SELECT current_database()"
    assert {"app_test\n", 0} = psql(pg, sql, database: "app_test")
    assert {"1\n", 0} = psql(pg, "SELECT count(*) FROM posts", database: "app_test")
    assert {out, 1} = psql(pg, "SELECT count(*) FROM posts")
    assert out =~ ~s(relation "posts" does not exist), "each database has its own tables"
    assert {_, 0} = psql(pg, "DROP DATABASE app_test")
    assert {out, 2} = psql(pg, "SELECT 1", database: "app_test")
    assert out =~ ~s(FATAL:  database "app_test" does not exist)
  end

  test "a database that does not exist or takes no connections gets the server's FATAL at once, and the served one's client goes on",
       %{pg: pg} do
    {holder, _} = open_psql(pg)
    Port.command(holder, "SELECT 'held';\n")
    await_output(holder, "held")

    assert {out, 2} = psql(pg, "SELECT 1", database: "nosuch")
    assert out =~ ~s(FATAL:  database "nosuch" does not exist)
    assert {out, 2} = psql(pg, "SELECT 1", database: "template0")
    assert out =~ ~s(FATAL:  database "template0" is not currently accepting connections)
    assert {out, 2} = psql(pg, "SELECT 1", database: ~s(it's "odd"))
    assert out =~ ~s(database "it's "odd"" does not exist)

    Port.command(holder, "SELECT 'still ' || current_database();\n")
    await_output(holder, "still postgres")
    Port.close(holder)
  end

  test "a client of another database waits while the served one has clients: served when they leave, else refused with 55006 and nobody is harmed",
       %{pg: pg} do
    assert {_, 0} = psql(pg, "CREATE DATABASE other")
    {holder, _} = open_psql(pg)
    Port.command(holder, "BEGIN; SELECT 'in a transaction';\n")
    await_output(holder, "in a transaction")

    waiting = Task.async(fn -> psql(pg, "SELECT current_database()", database: "other") end)
    Process.sleep(1_000)
    Port.command(holder, "COMMIT; SELECT 'leaving ' || current_database();\n")
    await_output(holder, "leaving postgres")
    Port.close(holder)
    assert {"other\n", 0} = Task.await(waiting, 10_000)

    # Now "other" is served: a client of postgres waits for its clients in turn.
    {holder, _} = open_psql(pg, database: "other")
    Port.command(holder, "SELECT 'held in ' || current_database();\n")
    await_output(holder, "held in other")
    {micros, {out, 2}} = :timer.tc(fn -> psql(pg, "SELECT 1") end)
    assert out =~ ~s(FATAL:  database "postgres" cannot be served now: this pglite instance serves one database at a time, and 1 client of database "other" is connected)
    assert micros >= PgliteEx.Databases.wait_ms() * 1_000
    Port.command(holder, "SELECT 'unharmed';\n")
    await_output(holder, "unharmed")
    Port.close(holder)
    assert {"postgres\n", 0} = psql(pg, "SELECT current_database()")
  end

  test "kill -9 of the port while it serves another database: it comes back on that database, with its data", %{pg: pg} do
    assert {_, 0} = psql(pg, "CREATE DATABASE app_dev")
    assert {_, 0} = psql(pg, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('committed')", database: "app_dev")
    backend = PgliteEx.Instance.backend(pg)
    before = PgliteEx.os_pid(backend)
    kill9(before)

    assert {"committed|app_dev\n", 0} = retry(fn -> psql(pg, "SELECT v, current_database() FROM kept", database: "app_dev") end)
    assert PgliteEx.os_pid(backend) != before
  end

  defp retry(fun, tries \\ 50) do
    case fun.() do
      {_, 0} = ok -> ok
      _ when tries > 0 -> Process.sleep(100) && retry(fun, tries - 1)
      other -> other
    end
  end
end
