defmodule Pglite.ServerTaskTest do
  @moduledoc "mix pglite.server, the README's run command: prints how to connect, serves, stops on SIGTERM."
  use ExUnit.Case, async: false

  @moduletag timeout: 120_000

  test "prints a psql command that works, then stops cleanly on SIGTERM" do
    mix = System.find_executable("mix")
    port = Port.open({:spawn_executable, mix}, [:binary, :exit_status, :stderr_to_stdout, args: ["pglite.server", "--tcp-port", "0"]])
    {:os_pid, os_pid} = Port.info(port, :os_pid)
    # If an assertion fails, the server must not outlive the test run.
    on_exit(fn -> System.cmd("kill", ["-TERM", "#{os_pid}"], stderr_to_stdout: true) end)
    output = collect(port, "Stop with Ctrl-C")

    [_, password, dir, pgport, user, db] =
      Regex.run(~r/psql: +PGPASSWORD=(\S+) psql -h (\S+) -p (\d+) -U (\S+) (\S+)/, output)

    assert output =~ ~r/TCP: +PGPASSWORD=\S+ psql -h 127\.0\.0\.1 -p \d+/
    assert output =~ "Postgrex: [socket_dir:"

    {out, 0} =
      System.cmd("psql", ["-X", "-A", "-t", "-h", dir, "-p", pgport, "-U", user, "-d", db, "-c", "SELECT 'served'"],
        env: [{"PGPASSWORD", password}]
      )

    assert out =~ "served"

    System.cmd("kill", ["-TERM", "#{os_pid}"])
    assert_receive {^port, {:exit_status, 0}}, 30_000
    refute File.exists?(dir), "the socket directory is removed"
  end

  defp collect(port, marker, acc \\ "") do
    receive do
      {^port, {:data, data}} ->
        acc = acc <> data
        if acc =~ marker, do: acc, else: collect(port, marker, acc)

      {^port, {:exit_status, status}} ->
        flunk("mix pglite.server exited with #{status}:\n#{acc}")
    after
      60_000 -> flunk("mix pglite.server never became ready:\n#{acc}")
    end
  end
end
