defmodule Pglite.SupervisionTest do
  @moduledoc "kill -9 of the port, restarts with back-off, one instance per directory, in memory too."
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @tag :tmp_dir
  test "kill -9 of the port eight times under a write loop: it comes back each time and no acknowledged commit is lost",
       %{tmp_dir: tmp} do
    {:ok, pg} = Pglite.start_link(data_dir: Path.join(tmp, "db"))
    backend = PgliteEx.Instance.backend(pg)
    out = kills_under_writes(pg, 8, "9")
    assert out =~ "is restarting", "clients are told why: " <> out
    # The same process still serves: nothing gave up.
    assert PgliteEx.Instance.backend(pg) == backend
    assert {"1\n", 0} = psql(pg, "SELECT 1")
    Pglite.stop(pg)
  end

  test "kill -9 of an in-memory instance's port under a write loop loses no acknowledged commit, and its files go when it stops" do
    {:ok, pg} = Pglite.start_link()
    [memory_dir] = for {PgliteEx.Instance.MemoryDir, pid, _, _} <- Supervisor.which_children(pg), do: :sys.get_state(pid)
    assert File.dir?(Path.join(memory_dir, "pg_wal"))
    kills_under_writes(pg, 4, "6")
    Pglite.stop(pg)
    refute File.exists?(memory_dir)
  end

  @tag :tmp_dir
  test "a query that reaches the instance after kill -9 closed the port, before it handled the exit, gets an error and the instance comes back",
       %{tmp_dir: tmp} do
    {:ok, pg} = Pglite.start_link(data_dir: Path.join(tmp, "db"))
    backend = PgliteEx.Instance.backend(pg)
    os_pid = PgliteEx.os_pid(backend)
    port = Enum.find(Port.list(), &(Port.info(&1, :os_pid) == {:os_pid, os_pid}))

    # Hold the instance so the query is in its mailbox before the port's exit message.
    :ok = :sys.suspend(backend)
    query = Task.async(fn -> Pglite.query(pg, "SELECT 1") end)
    wait_until(fn -> {:message_queue_len, 1} == Process.info(backend, :message_queue_len) end)
    kill9(os_pid)
    wait_until(fn -> Port.info(port) == nil end)
    :ok = :sys.resume(backend)

    assert {:error, {:backend_down, reason}} = Task.await(query)
    assert reason =~ "exited (status 137)"
    assert Process.alive?(backend)
    wait_until(fn -> match?({:ok, %{rows: [["1"]]}}, Pglite.query(pg, "SELECT 1")) end)
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

    assert_receive {:DOWN, ^ref, :process, _, {:bad_data_dir, why}}, 20_000
    assert why =~ "another PostgreSQL major version"
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

  # crash_writer.py commits row after row for `seconds` while the port is killed
  # `kills` times; every commit it saw acknowledged must be there. Its output.
  defp kills_under_writes(pg, kills, seconds) do
    {_, 0} = psql(pg, "CREATE TABLE crash (id int PRIMARY KEY)")
    backend = PgliteEx.Instance.backend(pg)
    writer = Task.async(fn -> python(pg, "crash_writer", [seconds]) end)

    for _ <- 1..kills do
      Process.sleep(800)
      kill9(wait_for_os_pid(backend))
    end

    {out, 0} = Task.await(writer, 60_000)
    assert [_, acked] = Regex.run(~r/acked (\d+)/, out)
    # Enough commits to mean something; a loaded machine restarts slowly (23 seen).
    assert String.to_integer(acked) > kills, out
    assert out =~ "lost 0"
    out
  end

  defp wait_until(check) do
    if check.(), do: :ok, else: Process.sleep(10) && wait_until(check)
  end

  defp wait_for_os_pid(backend) do
    case PgliteEx.os_pid(backend) do
      nil -> Process.sleep(20) && wait_for_os_pid(backend)
      pid -> pid
    end
  end
end
