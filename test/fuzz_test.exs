defmodule Pglite.FuzzTest do
  @moduledoc """
  Hostile input is a user too: four clients send mutated sequences of valid messages
  (seeded, so the same cases every run) beside a canary client that commits a row
  every 100 ms. The backend process never changes (no crash, no restart), the canary
  never fails and waits at most about the idle timeout, and every row it committed
  is there; afterwards the port's memory and the VM's come back to their bounds. A
  short budget here; `FUZZ_SECONDS` runs longer by hand, `FUZZ_SEED` other cases.
  """
  use ExUnit.Case, async: false
  import Bitwise
  import Pglite.TestClients

  @moduletag timeout: 600_000

  # Bounds on what stays: the backend's caches of the fuzzers' catalog objects, the
  # VM's binaries not yet collected.
  @port_growth 64
  @vm_growth 64

  test "mutated protocol from four clients never ends the backend, fails the canary or loses a commit" do
    seconds = System.get_env("FUZZ_SECONDS", "20")
    seed = System.get_env("FUZZ_SEED", "7")
    {:ok, pg} = Pglite.start_link(idle_in_transaction_timeout: 2_000)
    backend = PgliteEx.Instance.backend(pg)
    os_pid = PgliteEx.os_pid(backend)
    {:ok, _} = Pglite.query(pg, "SELECT 1")
    Process.sleep(1_000)
    port_before = rss_mib(os_pid)
    vm_before = div(:erlang.memory(:total), 1 <<< 20)

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

    # What the fuzzers' big messages took goes back once they are gone.
    port_after = settled(fn -> rss_mib(os_pid) end, port_before + @port_growth)
    vm_after = settled(fn -> div(:erlang.memory(:total), 1 <<< 20) end, vm_before + @vm_growth)
    IO.puts("port RSS #{port_before} -> #{port_after} MiB, VM #{vm_before} -> #{vm_after} MiB")
    assert port_after <= port_before + @port_growth
    assert vm_after <= vm_before + @vm_growth
  end

  defp rss_mib(os_pid) do
    [kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, File.read!("/proc/#{os_pid}/status"), capture: :all_but_first)
    div(String.to_integer(kb), 1024)
  end

  # The figure once it is at most `bound`, or after 10 s.
  defp settled(figure, bound, tries \\ 100) do
    value = figure.()

    if value <= bound or tries == 0 do
      value
    else
      :erlang.garbage_collect()
      Process.sleep(100)
      settled(figure, bound, tries - 1)
    end
  end
end
