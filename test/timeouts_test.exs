defmodule Pglite.TimeoutsTest do
  @moduledoc "Which timeout applies to a client, from its settings."
  use ExUnit.Case, async: true
  alias PgliteEx.Timeouts

  test "time settings read as PostgreSQL reads them: bare ms, or with a unit" do
    assert Timeouts.ms("300") == 300
    assert Timeouts.ms("5s") == 5_000
    assert Timeouts.ms("2min") == 120_000
    assert Timeouts.ms("0") == 0
    assert Timeouts.ms("soon") == 0
    assert Timeouts.ms(nil) == 0
  end

  test "an idle holder: its own timeout in a transaction, the instance's only while others wait" do
    own = %{"idle_in_transaction_session_timeout" => "300"}
    assert Timeouts.idle(own, ?T, false, 10_000) == 300
    assert Timeouts.idle(own, ?I, false, 10_000) == nil
    assert Timeouts.idle(%{}, ?T, false, 10_000) == nil
    assert Timeouts.idle(%{}, ?T, true, 10_000) == 10_000
    assert Timeouts.idle(%{}, ?T, true, 0) == nil
  end

  test "a wait in line ends at the shorter of statement_timeout and lock_timeout" do
    assert {300, "57014", _} = Timeouts.wait(%{"statement_timeout" => "300", "lock_timeout" => "1s"})
    assert {100, "55P03", _} = Timeouts.wait(%{"statement_timeout" => "300", "lock_timeout" => "100"})
    assert Timeouts.wait(%{}) == nil
  end
end
