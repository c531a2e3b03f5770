defmodule PgliteEx.InFlightTest do
  @moduledoc """
  The model of what the backend owes: it follows postgres.c, where an error in an
  extended-protocol message skips everything up to the next Sync, Queries included.
  """
  use ExUnit.Case, async: true
  alias PgliteEx.InFlight

  # Feeds the backend's replies (a charlist of message types) to the model.
  defp replies(in_flight, tags), do: Enum.reduce(tags, in_flight, &InFlight.received(&2, &1))
  defp sent(kinds), do: InFlight.sent(InFlight.new(), kinds)

  test "a simple Query is owed until its ReadyForQuery, errors included" do
    f = sent(~c"Q")
    refute InFlight.empty?(f |> replies(~c"TDC"))
    refute InFlight.empty?(f |> replies(~c"TDE"))
    assert InFlight.empty?(f |> replies(~c"TDEZ"))
  end

  test "Postgrex's savepoint mode: a failed Execute skips the Query before the Sync" do
    # SAVEPOINT went before; then Parse/Bind/Execute fail, Q ROLLBACK TO SAVEPOINT, Sync.
    f = sent(~c"PBEQS") |> replies(~c"12")
    refute InFlight.empty?(f)
    f = replies(f, ~c"E")
    refute InFlight.empty?(f)
    refute InFlight.skipping?(f)
    assert InFlight.empty?(replies(f, ~c"Z"))
  end

  test "an error in each position of a pipeline ends it at the Sync" do
    for {pos, answers} <- [{0, ~c""}, {1, ~c"1"}, {2, ~c"12"}, {3, ~c"12T"}] do
      f = sent(~c"PBDEQDS") |> replies(answers ++ ~c"E")
      refute InFlight.empty?(f), "error at #{pos}"
      assert InFlight.empty?(replies(f, ~c"Z")), "error at #{pos}"
    end

    # No error: every message is answered, the Query with its own ReadyForQuery.
    f = sent(~c"PBDEQS") |> replies(~c"12nCTDCZ")
    refute InFlight.empty?(f)
    assert InFlight.empty?(replies(f, ~c"Z"))
  end

  test "an error without a Sync leaves the backend skipping whatever comes until the client's Sync" do
    f = sent(~c"PE") |> replies(~c"E")
    assert InFlight.empty?(f)
    assert InFlight.skipping?(f)
    f = InFlight.sent(f, ~c"QBE")
    assert InFlight.empty?(f)
    f = InFlight.sent(f, ~c"SQ")
    refute InFlight.skipping?(f)
    f = replies(f, ~c"Z")
    refute InFlight.empty?(f)
    assert InFlight.empty?(replies(f, ~c"TDCZ"))
  end

  test "an error in a Query, a FunctionCall or at a Sync's commit skips nothing" do
    f = sent(~c"QPBES") |> replies(~c"EZ")
    refute InFlight.skipping?(f)
    assert InFlight.empty?(replies(f, ~c"12CZ"))
    assert InFlight.empty?(sent(~c"PBES") |> replies(~c"12CEZ"))
    assert InFlight.empty?(sent(~c"FQ") |> replies(~c"EZCZ"))
  end

  test "Describe ends at RowDescription or NoData; Execute at CommandComplete, EmptyQueryResponse or PortalSuspended; COPY data is not an end" do
    assert InFlight.empty?(sent(~c"PDBES") |> replies(~c"1tT2DDCZ"))
    assert InFlight.empty?(sent(~c"PDS") |> replies(~c"1tnZ"))
    f = sent(~c"PBEES") |> replies(~c"12DsE")
    assert InFlight.empty?(replies(f, ~c"Z"))
    # Execute of COPY TO STDOUT: CopyOutResponse, CopyData, CopyDone, then CommandComplete.
    f = sent(~c"PBES") |> replies(~c"12Hddc")
    refute InFlight.empty?(f)
    assert InFlight.empty?(replies(f, ~c"CZ"))
    assert InFlight.empty?(sent(~c"PBES") |> replies(~c"12IZ"))
  end

  test "marks count what was sent before them, answered or skipped" do
    f = sent(~c"PBEQS")
    mark = InFlight.mark(f)
    f = InFlight.sent(f, ~c"Q")
    assert InFlight.ready_owed?(f)
    f = replies(f, ~c"12EZ")
    assert InFlight.answered?(f, mark)
    assert InFlight.ready_owed?(f)
    refute InFlight.ready_owed?(replies(f, ~c"CZ"))
  end

  test "a barrier owes an unknown number of replies, whatever comes" do
    f = InFlight.unknown() |> replies(~c"ZZEZCZDTZ")
    refute InFlight.empty?(f)
    assert InFlight.ready_owed?(f)
  end

  test "NoticeResponse, ParameterStatus and NotificationResponse finish nothing" do
    f = sent(~c"PS") |> replies(~c"NSA")
    refute InFlight.empty?(f)
    assert InFlight.empty?(replies(f, ~c"1Z"))
  end
end
