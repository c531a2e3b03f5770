defmodule Pglite.SupervisionTest do
  @moduledoc "kill -9 of the port, restart by the supervisor, one instance per directory."
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @tag :tmp_dir
  test "kill -9 of the port: it is restarted, new clients work, committed data is intact", %{tmp_dir: tmp} do
    dir = Path.join(tmp, "db")
    {:ok, pg} = Pglite.start_link(data_dir: dir)
    {_, 0} = psql(pg, "CREATE TABLE kept (v int); INSERT INTO kept SELECT generate_series(1, 100)")
    old = PgliteEx.Instance.backend(pg)
    ref = Process.monitor(old)
    kill9(PgliteEx.os_pid(old))
    assert_receive {:DOWN, ^ref, :process, _, {:port_exited, 137, _}}, 10_000

    assert {"100\n", 0} = wait_for(fn -> psql(pg, "SELECT count(*) FROM kept") end)
    refute PgliteEx.Instance.backend(pg) == old
    Pglite.stop(pg)
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

  defp wait_for(fun, tries \\ 50) do
    case fun.() do
      {_, 0} = ok -> ok
      _ when tries > 0 -> Process.sleep(200) && wait_for(fun, tries - 1)
      other -> other
    end
  end
end
