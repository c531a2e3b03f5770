defmodule Pglite.StopsReadingTest do
  @moduledoc """
  A client that stops reading while a big result streams cannot grow the BEAM without
  bound: the port is asked to hold the backend's output once 8 MB wait unwritten (as
  a server's backend blocks on that client's socket), and when others wait, that
  client is disconnected after the idle timeout and the others are served.
  """
  use ExUnit.Case, async: false
  import Pglite.TestClients

  @moduletag timeout: 180_000

  test "a client that stops reading holds bounded memory, and is disconnected when others wait" do
    {:ok, pg} = Pglite.start_link(idle_in_transaction_timeout: 3_000)
    before = :erlang.memory(:total)
    reader = Task.async(fn -> python(pg, "stops_reading", ["20"]) end)

    # The result would be ~5 GB; before back-pressure the BEAM grew ~100 MB a second.
    peak = Enum.reduce(1..20, 0, fn _, peak -> Process.sleep(100) && max(peak, :erlang.memory(:total)) end)

    canary = Task.async(fn -> psql(pg, "SELECT 'served'") end)
    peak = Enum.reduce(1..30, peak, fn _, peak -> Process.sleep(100) && max(peak, :erlang.memory(:total)) end)
    assert peak - before < 64 * 1024 * 1024, "the BEAM grew by #{div(peak - before, 1024 * 1024)} MB"

    # Served after the idle timeout (3 s), not after the 5 GB result.
    assert {"served\n", 0} = Task.await(canary, 30_000)
    {out, 0} = Task.await(reader, 60_000)
    assert out =~ "sent"
    [_, bytes] = Regex.run(~r/closed after (\d+) bytes/, out)
    assert String.to_integer(bytes) < 100 * 1024 * 1024

    # The backend is still the same and serves on.
    assert {"1\n", 0} = psql(pg, "SELECT 1")
  end
end
