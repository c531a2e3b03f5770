defmodule PgliteEx.Server.TurnEndTest do
  @moduledoc "Which requests may have the next client's request queued right behind them."
  use ExUnit.Case, async: true
  alias PgliteEx.Server.TurnEnd

  defp msg(tag, body), do: {tag, IO.iodata_to_binary(body), <<>>}
  defp query(sql), do: msg(?Q, [sql, 0])
  defp parse(name, sql), do: msg(?P, [name, 0, sql, 0, <<0::16>>])
  defp bind(statement), do: msg(?B, [0, statement, 0, <<0::16, 0::16, 0::16>>])
  defp sync, do: msg(?S, "")

  test "a query or an extended sequence without BEGIN, START, COPY or a session change ends the turn" do
    assert TurnEnd.ends_turn?([query("SELECT abalance FROM pgbench_accounts WHERE aid = 7")], MapSet.new())
    assert TurnEnd.ends_turn?([parse("", "SELECT $1"), bind(""), msg(?E, [0, <<0::32>>]), sync()], MapSet.new())

    for sql <- ["BEGIN", "start transaction", "COPY t FROM STDIN", "SET x = 1", "SELECT set_config('a', 'b', false)"] do
      refute TurnEnd.ends_turn?([query(sql)], MapSet.new()), sql
    end

    # Not ended by a Flush, nor with COPY data in it.
    refute TurnEnd.ends_turn?([parse("", "SELECT 1"), msg(?H, "")], MapSet.new())
    refute TurnEnd.ends_turn?([msg(?d, "1\n"), msg(?c, ""), sync()], MapSet.new())
  end

  test "an extended sequence whose last messages are a Query, with no Sync after them, does not end the turn" do
    # An error in the Execute skips the Query: a request written behind it would be skipped too.
    refute TurnEnd.ends_turn?([parse("", "SELECT 1"), bind(""), msg(?E, [0, <<0::32>>]), query("SELECT 2")], MapSet.new())
    assert TurnEnd.ends_turn?([parse("", "SELECT 1"), bind(""), msg(?E, [0, <<0::32>>]), query("SELECT 2"), sync()], MapSet.new())
    assert TurnEnd.ends_turn?([parse("", "SELECT 1"), sync(), query("SELECT 2")], MapSet.new())
  end

  test "a Bind of a statement parsed from a risky text does not end the turn, until it is parsed again" do
    risky = TurnEnd.track([parse("s1", "BEGIN"), sync()], MapSet.new())
    refute TurnEnd.ends_turn?([bind("s1"), msg(?E, [0, <<0::32>>]), sync()], risky)
    assert TurnEnd.ends_turn?([bind("s2"), msg(?E, [0, <<0::32>>]), sync()], risky)
    safe = TurnEnd.track([parse("s1", "SELECT 1"), sync()], risky)
    assert TurnEnd.ends_turn?([bind("s1"), sync()], safe)
    assert TurnEnd.track([msg(?C, [?S, "s1", 0]), sync()], risky) == MapSet.new()
  end

  test "a lone COMMIT, END, ROLLBACK or ABORT ends a transaction; AND CHAIN and savepoints do not" do
    for sql <- ["COMMIT", "end;", "ROLLBACK WORK", " abort transaction ; "], do: assert(TurnEnd.ends_transaction?([query(sql)]), sql)
    for sql <- ["COMMIT AND CHAIN", "ROLLBACK TO SAVEPOINT a", "COMMIT PREPARED 'x'", "END; BEGIN"],
        do: refute(TurnEnd.ends_transaction?([query(sql)]), sql)

    refute TurnEnd.ends_transaction?([query("COMMIT"), query("SELECT 1")])
    # Long texts are not looked at: at worst a COMMIT padded with spaces queues nothing.
    refute TurnEnd.ends_transaction?([query("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;")])
    assert TurnEnd.ends_transaction?([query(String.duplicate(" ", 40) <> "COMMIT")])
  end
end
