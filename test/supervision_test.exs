defmodule Pglite.SupervisionTest do
  @moduledoc "kill -9 of the port, restarts with back-off, one instance per directory."
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @tag :tmp_dir
  test "kill -9 of the port eight times under a write loop: it comes back each time and no acknowledged commit is lost",
       %{tmp_dir: tmp} do
    {:ok, pg} = Pglite.start_link(data_dir: Path.join(tmp, "db"))
    {_, 0} = psql(pg, "CREATE TABLE crash (id int PRIMARY KEY)")
    backend = PgliteEx.Instance.backend(pg)
    writer = Task.async(fn -> python(pg, "crash_writer", ["9"]) end)

    for _ <- 1..8 do
      Process.sleep(800)
      kill9(wait_for_os_pid(backend))
    end

    {out, 0} = Task.await(writer, 60_000)
    assert [_, acked] = Regex.run(~r/acked (\d+)/, out)
    assert String.to_integer(acked) > 100, out
    assert out =~ "lost 0"
    assert out =~ "is restarting", "clients are told why: " <> out
    # The same process still serves: nothing gave up.
    assert PgliteEx.Instance.backend(pg) == backend
    assert {"1\n", 0} = psql(pg, "SELECT 1")
    Pglite.stop(pg)
  end

  @tag :tmp_dir
  test "a restart that cannot succeed stops the instance with the port's reason instead of retrying for ever",
       %{tmp_dir: tmp} do
    Process.flag(:trap_exit, true)
    dir = Path.join(tmp, "db")
    {:ok, pg} = Pglite.start_link(data_dir: dir)
    backend = PgliteEx.Instance.backend(pg)
    ref = Process.monitor(backend)
    File.write!(Path.join(dir, "PG_VERSION"), "9\n")
    kill9(PgliteEx.os_pid(backend))

    assert_receive {:DOWN, ^ref, :process, _, {:port_exited, 1, tail}}, 20_000
    assert tail =~ "PG_VERSION" or tail =~ "incompatible"
    assert_receive {:EXIT, ^pg, _}, 20_000
  end

  @tag :tmp_dir
  test "a second instance on the same directory gets {:data_dir_in_use, path}", %{tmp_dir: tmp} do
    dir = Path.join(tmp, "db")
    {:ok, pg} = Pglite.start_link(data_dir: dir)
    {:ok, _} = Pglite.query(pg, "CREATE TABLE mine (v text); INSERT INTO mine VALUES ('first')")
    assert {:error, {:data_dir_in_use, ^dir}} = Pglite.start_link(data_dir: dir)
    assert {:ok, %{rows: [["first"]]}} = Pglite.query(pg, "SELECT v FROM mine")
    Pglite.stop(pg)

    {:ok, pg} = Pglite.start_link(data_dir: dir)
    assert {:ok, %{rows: [["first"]]}} = Pglite.query(pg, "SELECT v FROM mine")
    Pglite.stop(pg)
  end

  defp wait_for_os_pid(backend) do
    case PgliteEx.os_pid(backend) do
      nil -> Process.sleep(20) && wait_for_os_pid(backend)
      pid -> pid
    end
  end
end
