defmodule Pglite.FuzzTest do
  @moduledoc """
  Hostile input is a user too: four clients send mutated sequences of valid messages
  (seeded, so the same cases every run) beside a canary client that commits a row
  every 100 ms. The backend process never changes (no crash, no restart), the canary
  never fails and waits at most about the idle timeout, and every row it committed
  is there. A short budget here; `FUZZ_SECONDS` runs longer by hand, `FUZZ_SEED` other
  cases.
  """
  use ExUnit.Case, async: false
  import Pglite.TestClients

  @moduletag timeout: 600_000

  test "mutated protocol from four clients never ends the backend, fails the canary or loses a commit" do
    seconds = System.get_env("FUZZ_SECONDS", "20")
    seed = System.get_env("FUZZ_SEED", "7")
    {:ok, pg} = Pglite.start_link(idle_in_transaction_timeout: 2_000)
    backend = PgliteEx.Instance.backend(pg)
    os_pid = PgliteEx.os_pid(backend)

    {out, status} = python(pg, "fuzz_clients", [seed, seconds, "4"])
    assert status == 0, out
    IO.puts("\n" <> out)

    [_, cases] = Regex.run(~r/cases (\d+)/, out)
    assert String.to_integer(cases) > 50
    assert out =~ "canary failures 0 "
    assert out =~ ~r/committed rows all kept True/
    [_, slowest] = Regex.run(~r/canary slowest ([\d.]+) s/, out)
    assert String.to_float(slowest) < 10.0
    assert PgliteEx.Instance.backend(pg) == backend
    assert PgliteEx.os_pid(backend) == os_pid
  end
end
