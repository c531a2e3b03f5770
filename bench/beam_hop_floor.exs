# What one BEAM process in the middle costs, with nothing else in the way: pgbench
# against a PostgreSQL server from Debian's packages directly (Unix socket), and
# through the simplest possible proxy in this VM (a process per client that forwards
# bytes between its TCP client socket and the server's Unix socket, active mode both
# ways). pglite's front end has that hop and more (the port's pipes, a second process),
# so the proxy's ratio to the server is a ceiling for pglite's ratio on this machine.
#
#     mix run bench/beam_hop_floor.exs [seconds_per_run] [rounds]
#
# Median tps of `rounds` runs each (default 3), direct and proxied taking turns.

{seconds, rounds} =
  case System.argv() do
    [] -> {"4", 3}
    [s] -> {s, 3}
    [s, r | _] -> {s, String.to_integer(r)}
  end

Code.require_file("../test/support/native_server.ex", __DIR__)

defmodule BeamHop.Proxy do
  @moduledoc false

  def start(server_socket) do
    {:ok, listen} = :gen_tcp.listen(0, [:binary, ip: {127, 0, 0, 1}, active: false, reuseaddr: true, nodelay: true])
    {:ok, port} = :inet.port(listen)
    spawn_link(fn -> accept(listen, server_socket) end)
    port
  end

  defp accept(listen, server_socket) do
    {:ok, client} = :gen_tcp.accept(listen)
    pid = spawn(fn -> receive(do: (:go -> forward(client, server_socket))) end)
    :ok = :gen_tcp.controlling_process(client, pid)
    send(pid, :go)
    accept(listen, server_socket)
  end

  defp forward(client, server_socket) do
    {:ok, server} = :gen_tcp.connect({:local, server_socket}, 0, [:binary, active: true])
    :ok = :inet.setopts(client, active: true)
    loop(client, server)
  end

  defp loop(client, server) do
    receive do
      {:tcp, ^client, data} -> :gen_tcp.send(server, data) && loop(client, server)
      {:tcp, ^server, data} -> :gen_tcp.send(client, data) && loop(client, server)
      {:tcp_closed, _} -> :gen_tcp.close(client) && :gen_tcp.close(server)
    end
  end
end

run = fn args, env ->
  case System.cmd("pgbench", args, env: env, stderr_to_stdout: true) do
    {out, 0} -> out
    {out, status} -> raise "pgbench #{Enum.join(args, " ")} failed (#{status}):\n#{out}"
  end
end

server = Pglite.NativeServer.start(fsync: "off", shared_buffers: "128MB")

try do
  proxy_port = BeamHop.Proxy.start(Path.join(server.host, ".s.PGSQL.#{server.port}"))

  targets = [
    direct: ["-h", server.host, "-p", "#{server.port}", "-U", "postgres"],
    proxied: ["-h", "127.0.0.1", "-p", "#{proxy_port}", "-U", "postgres"]
  ]

  run.(targets[:direct] ++ ["-i", "-q", "-I", "dtGvp", "-s", "1", "postgres"], [])
  tps = fn out -> [_, v] = Regex.run(~r/tps = ([\d.]+) \(without initial/, out); String.to_float(v) end
  median = fn xs -> xs |> Enum.sort() |> Enum.at(div(length(xs), 2)) end

  IO.puts("pgbench through one BEAM process, #{seconds} s per run, median of #{rounds}, #{System.schedulers_online()} cores, #{Date.utc_today()}")
  IO.puts(String.pad_trailing("workload", 26) <> Enum.map_join(["server tps", "proxied tps", "ratio"], "", &String.pad_leading(&1, 13)))

  for {label, args} <- [
        {"-S, 1 client, simple", ["-S", "-c", "1", "-M", "simple"]},
        {"-S, 1 client, prepared", ["-S", "-c", "1", "-M", "prepared"]},
        {"-S, 8 clients, prepared", ["-S", "-c", "8", "-j", "2", "-M", "prepared"]},
        {"tpcb-like, 1 client", ["-c", "1"]}
      ] do
    samples = for _ <- 1..rounds, {name, conn} <- targets, do: {name, tps.(run.(conn ++ args ++ ["-T", seconds, "postgres"], []))}
    r = samples |> Enum.group_by(&elem(&1, 0), &elem(&1, 1)) |> Map.new(fn {k, xs} -> {k, median.(xs)} end)
    cells = [:erlang.float_to_binary(r.direct, decimals: 0), :erlang.float_to_binary(r.proxied, decimals: 0), :erlang.float_to_binary(r.proxied / r.direct, decimals: 2) <> "x"]
    IO.puts(String.pad_trailing(label, 26) <> Enum.map_join(cells, "", &String.pad_leading(&1, 13)))
  end
after
  Pglite.NativeServer.stop(server)
end
