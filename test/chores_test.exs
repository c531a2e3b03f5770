defmodule PgliteEx.ChoresTest do
  @moduledoc "What the front end's chores write to the backend between turns (no port)."
  use ExUnit.Case, async: true
  alias PgliteEx.{Chores, Wire}

  @none &__MODULE__.no_settings/1
  def no_settings(_pid), do: %{}

  test "a ROLLBACK only when the backend is in a transaction" do
    assert Chores.payload(:rollback, ?I, @none) == nil
    assert {payload, ~c"Q"} = Chores.payload(:rollback, ?E, @none)
    assert IO.iodata_to_binary(payload) == IO.iodata_to_binary(Wire.query("ROLLBACK"))
  end

  test "a departed client's statements are closed with one Sync; none, nothing sent" do
    assert Chores.payload({:close, []}, ?I, @none) == nil
    assert {payload, ~c"CCS"} = Chores.payload({:close, ["s1", "s2"]}, ?I, @none)
    {:ok, messages, ""} = Wire.split(IO.iodata_to_binary(payload))
    assert [?C, ?C, ?S] == Enum.map(messages, &elem(&1, 0))
  end

  test "statements parsed again each have a Sync of their own: one that fails now does not skip the others" do
    parses = for name <- ["c3_a", "c3_b"], do: IO.iodata_to_binary(Wire.message(?P, [name, 0, "SELECT 1", 0, <<0::16>>]))
    assert {payload, ~c"PSPS"} = Chores.payload({:reparse, self(), parses}, ?I, @none)
    {:ok, messages, ""} = Wire.split(IO.iodata_to_binary(payload))
    assert [{?P, "c3_a" <> _, _}, {?S, "", _}, {?P, "c3_b" <> _, _}, {?S, "", _}] = messages
  end

  test "the barrier ends COPY, an extended sequence and a transaction, and waits for an idle probe" do
    assert {payload, :barrier} = Chores.payload({:barrier, "t"}, ?T, @none)
    {:ok, messages, ""} = Wire.split(IO.iodata_to_binary(payload))
    assert ~c"fSQ" == Enum.map(messages, &elem(&1, 0))
  end

  test "a database's look-up names it as a literal, quotes and all" do
    waiter = %{database: ~s(it's "odd")}
    assert {payload, ~c"Q"} = Chores.payload({:look_up, waiter}, ?I, @none)
    assert IO.iodata_to_binary(payload) =~ ~s(datname = E'it''s "odd"')
  end

  test "a new client's settings come from its record" do
    settings_of = fn :pid -> %{"DateStyle" => "iso,dmy"} end
    assert {payload, ~c"Q"} = Chores.payload({:register, nil, :pid}, ?I, settings_of)
    assert IO.iodata_to_binary(payload) =~ "iso,dmy"
    assert Chores.payload({:sql, nil}, ?I, @none) == nil
  end
end
