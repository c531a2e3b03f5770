defmodule PgliteEx.DatabasesTest do
  @moduledoc "Which database is served and who waits for another: the decisions, without a port."
  use ExUnit.Case, async: true
  alias PgliteEx.Databases

  defp waiter(database, n), do: %{from: {self(), n}, secret: n, settings: %{}, database: database, deadline: 0}

  test "a switch is due only when nobody of the served database is connected and the backend is free, for the first waiter" do
    dbs = Databases.new("postgres") |> Databases.wait(waiter("app", 1)) |> Databases.wait(waiter("other", 2))
    assert Databases.due(dbs, 1, true) == nil
    assert Databases.due(dbs, 0, false) == nil
    assert Databases.due(dbs, 0, true) == "app"
    assert Databases.due(Databases.new("postgres"), 0, true) == nil
  end

  test "taking a database's waiters leaves the others in line; a timed-out one leaves alone" do
    dbs = Databases.new("postgres") |> Databases.wait(waiter("app", 1)) |> Databases.wait(waiter("other", 2)) |> Databases.wait(waiter("app", 3))
    {taken, rest} = Databases.take(dbs, "app")
    assert Enum.map(taken, & &1.secret) == [1, 3]
    assert Enum.map(rest.waiting, & &1.secret) == [2]
    assert {%{secret: 2}, %{waiting: []}} = Databases.take_from(rest, {self(), 2})
    assert {nil, ^rest} = Databases.take_from(rest, {self(), 9})
  end

  test "the look-up's answer is the server's FATAL for a missing or closed database" do
    row = fn allowed -> [{?T, ""}, {?D, <<1::16, 1::32, allowed>>}, {?C, "SELECT 1\0"}, {?Z, "I"}] end
    assert Databases.verdict(row.(?t), "app") == :ok
    assert Databases.verdict(row.(?f), "template0") == {:fatal, "55000", ~s(database "template0" is not currently accepting connections)}
    assert Databases.verdict([{?T, ""}, {?C, "SELECT 0\0"}, {?Z, "I"}], "nope") == {:fatal, "3D000", ~s(database "nope" does not exist)}
    assert {:fatal, "XX000", _} = Databases.verdict([{?E, "SERROR\0"}, {?Z, "I"}], "app")
  end

  test "a client that waited in vain is told which database holds the instance" do
    assert {:fatal, "55006", message} = Databases.busy(Databases.new("app_dev"), "postgres", 2)
    assert message =~ ~s(database "postgres" cannot be served now) and message =~ ~s(2 clients of database "app_dev" are connected)
    assert Databases.check_sql(~s(it's)) =~ ~s(datname = E'it''s')
  end
end
