defmodule Pglite.PgbenchTest do
  @moduledoc """
  pgbench: client-side COPY for -i, then 8 clients in every query mode, no failures,
  and every transaction whole: the accounts, tellers and branches balances agree.
  """
  use ExUnit.Case, async: false
  import Pglite.TestClients

  @moduletag timeout: 300_000

  setup_all do
    {:ok, pg} = Pglite.start_link()
    {out, status} = pgbench(pg, ["-i", "-s", "1"])
    assert status == 0, out
    %{pg: pg}
  end

  for mode <- ["simple", "extended", "prepared"] do
    test "pgbench -c 8 -j 2 -T 10 -M #{mode} has no failed transactions and every transaction is whole", %{pg: pg} do
      {out, status} = pgbench(pg, ["-c", "8", "-j", "2", "-T", "10", "-M", unquote(mode)])
      assert status == 0, out
      assert [_, processed] = Regex.run(~r/number of transactions actually processed: (\d+)/, out)
      assert String.to_integer(processed) > 0
      assert out =~ ~r/number of failed transactions: 0 /
      {"100000\n", 0} = psql(pg, "SELECT count(*) FROM pgbench_accounts")

      # Each transaction adds its delta to one account, one teller and one branch: the
      # three sums stay equal only if every transaction ran whole or not at all.
      {sums, 0} =
        psql(pg, "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches)")

      assert [a, a, a] = sums |> String.trim() |> String.split("|"), sums
    end
  end
end
