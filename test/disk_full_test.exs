defmodule Pglite.DiskFullTest do
  @moduledoc """
  A full disk, for real (a data directory on a small tmpfs, the rest taken by a file;
  mounting needs root, as CI runs): psql gets the server's 53100, the instance stays
  up, and a port that cannot start again for lack of space is retried until space is
  freed, with every commit kept.
  """
  use ExUnit.Case, async: false
  import Pglite.TestClients

  @moduletag :tmp_dir

  setup %{tmp_dir: tmp} do
    disk = Path.join(tmp, "disk")
    File.mkdir_p!(disk)
    {out, status} = System.cmd("mount", ["-t", "tmpfs", "-o", "size=150m", "tmpfs", disk], stderr_to_stdout: true)
    assert status == 0, "this test mounts a tmpfs (root needed): #{out}"
    on_exit(fn -> System.cmd("umount", ["-l", disk]) end)
    %{disk: disk}
  end

  test "a full disk is ERROR 53100 for the statement, the instance stays up, and comes back with every commit once space is freed",
       %{disk: disk} do
    Process.flag(:trap_exit, true)
    {:ok, pg} = Pglite.start_link(data_dir: Path.join(disk, "db"))
    assert {_, 0} = psql(pg, "CREATE TABLE t (v text); INSERT INTO t VALUES ('committed'); CHECKPOINT")
    filler = fill(disk, 100)

    assert {out, 1} = psql(pg, "INSERT INTO t SELECT repeat('x', 1000) FROM generate_series(1, 20000)")
    assert out =~ ~r/ERROR:  could not extend file "base\/\d+\/\d+": No space left on device\nHINT:  Check free disk space./
    assert {"1\n", 0} = psql(pg, "SELECT count(*) FROM t"), "the session goes on"

    # The port dies with the disk full: its recovery cannot write, so it cannot start.
    kill9(PgliteEx.os_pid(PgliteEx.Instance.backend(pg)))
    {out, 2} = until(fn -> psql(pg, "SELECT 1") end, &match?({_, 2}, &1) and elem(&1, 0) =~ "53100")
    assert out =~ "FATAL:  the database system cannot start: its disk is full (No space left on device): free space on it"
    Process.sleep(1_000)
    assert Process.alive?(pg), "the instance stays up"
    refute_received {:EXIT, ^pg, _}

    File.rm!(filler)
    assert {"committed\n", 0} = until(fn -> psql(pg, "SELECT v FROM t") end, &match?({_, 0}, &1))
    assert {_, 0} = psql(pg, "INSERT INTO t VALUES ('after')")
    Pglite.stop(pg)
  end

  # Takes all but `leave_kb` of the disk's free space.
  defp fill(disk, leave_kb) do
    {out, 0} = System.cmd("df", ["-Pk", disk])
    free = out |> String.split("\n") |> Enum.at(1) |> String.split() |> Enum.at(3) |> String.to_integer()
    filler = Path.join(disk, "filler")
    {_, 0} = System.cmd("fallocate", ["-l", Integer.to_string((free - leave_kb) * 1024), filler])
    filler
  end

  defp until(fun, done?, tries \\ 100) do
    result = fun.()
    if done?.(result) or tries == 0, do: result, else: Process.sleep(100) && until(fun, done?, tries - 1)
  end
end
