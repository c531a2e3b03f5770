defmodule Pglite.RunawayRecursionTest do
  @moduledoc """
  No statement can end the shared backend: runaway recursion in PL/pgSQL, SQL
  functions, nested json or a regex is ERROR 54001 "stack depth limit exceeded" for
  its client, as on a server; the port keeps running, and the other clients and an
  in-memory instance's data are untouched.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @moduletag timeout: 120_000

  test "runaway recursion is ERROR 54001 for its client; the backend, the other clients and the data stay" do
    {:ok, pg} = Pglite.start_link()
    backend = PgliteEx.Instance.backend(pg)
    os_pid = PgliteEx.os_pid(backend)

    {_, 0} = psql(pg, "CREATE TABLE kept AS SELECT 1 AS v")

    {_, 0} =
      psql(pg, """
      CREATE FUNCTION forever(n int) RETURNS int AS $$ BEGIN RETURN forever(n + 1); END $$ LANGUAGE plpgsql;
      CREATE FUNCTION forever_sql(n int) RETURNS int AS $$ SELECT forever_sql(n + 1) $$ LANGUAGE sql;
      CREATE FUNCTION depth(n int) RETURNS int AS $$ BEGIN IF n <= 0 THEN RETURN 0; END IF; RETURN depth(n - 1) + 1; END $$ LANGUAGE plpgsql
      """)

    for sql <- [
          "SELECT forever(1)",
          "SELECT forever_sql(1)",
          "SELECT repeat('[', 1000000)::jsonb",
          "SELECT 'x' ~ (repeat('(', 200000) || 'x' || repeat(')', 200000))"
        ] do
      {out, status} = psql(pg, sql)
      assert status != 0
      assert out =~ "ERROR:  stack depth limit exceeded", "#{sql}: #{out}"
    end

    # Deeper than a PostgreSQL 15 server goes at its defaults (it stopped between 500 and 1,000 levels).
    assert {"2000\n", 0} = psql(pg, "SELECT depth(2000)")
    assert {"1\n", 0} = psql(pg, "SELECT count(*) FROM kept")
    assert PgliteEx.os_pid(backend) == os_pid
  end
end
