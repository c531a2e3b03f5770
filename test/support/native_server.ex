defmodule Pglite.NativeServer do
  @moduledoc """
  A PostgreSQL server from Debian's packages, in a temporary directory on a Unix socket
  (no TCP), for tests and benchmarks that compare with or load into a real server.
  """

  @doc "initdb + pg_ctl start; returns `%{host: socket_dir, port: 5432, bindir: ...}`."
  def start(settings \\ []) do
    [bindir | _] = Path.wildcard("/usr/lib/postgresql/*/bin") |> Enum.sort(:desc)
    # The OS pid too: unique_integer/1 repeats from one VM to the next, and a directory
    # left by a run that was killed would make initdb refuse.
    root = Path.join(System.tmp_dir!(), "pg-native-#{System.pid()}-#{System.unique_integer([:positive])}")
    File.rm_rf!(root)
    File.mkdir_p!(root)
    if root?(), do: run!("chown", ["postgres", root])
    data = Path.join(root, "data")
    as_postgres!(Path.join(bindir, "initdb"), ["-D", data, "-U", "postgres", "-A", "trust"])
    options = Enum.map_join([{"listen_addresses", "''"} | settings], " ", fn {k, v} -> "-c #{k}=#{v}" end)
    as_postgres!(Path.join(bindir, "pg_ctl"), ["-D", data, "-w", "-l", Path.join(root, "log"), "-o", "-k #{root} #{options}", "start"])
    %{host: root, port: 5432, bindir: bindir, data: data}
  end

  @doc "Stops the server and removes its directory."
  def stop(server) do
    as_postgres!(Path.join(server.bindir, "pg_ctl"), ["-D", server.data, "-m", "fast", "stop"])
    File.rm_rf!(server.host)
  end

  @doc "psql against the server as postgres; returns {output, status}."
  def psql(server, database, args) do
    System.cmd("psql", ["-X", "-q", "-A", "-t", "-h", server.host, "-p", "#{server.port}", "-U", "postgres", "-d", database] ++ args,
      stderr_to_stdout: true
    )
  end

  defp root?, do: System.cmd("id", ["-u"]) |> elem(0) |> String.trim() == "0"

  defp as_postgres!(bin, args) do
    if root?(), do: run!("runuser", ["-u", "postgres", "--", bin | args]), else: run!(bin, args)
  end

  defp run!(cmd, args) do
    case System.cmd(cmd, args, stderr_to_stdout: true) do
      {out, 0} -> out
      {out, status} -> raise "#{cmd} #{Enum.join(args, " ")} failed (#{status}):\n#{out}"
    end
  end
end
