# pgbench against this library, a PostgreSQL server from Debian's packages and, when
# installed (`npm ci --prefix bench/node`), the Node PGlite server
# @electric-sql/pglite-socket, all in one run on this machine; prints tps, the ratio to
# the server and to pglite-socket, then the cancel latency (bench/cancel_latency.py).
#
#     mix run bench/pgbench_compare.exs [seconds_per_run] [rounds]
#
# Each workload runs `rounds` times (default 3) on every target, the targets taking
# turns, and the median tps is printed (bench/pgbench_runs.ex).
#
# The server runs from a temporary directory with fsync off (like pglite's default)
# and shared_buffers=128MB. All three are reached over Unix sockets, as the server is
# and as Postgrex reaches pglite by default; `BENCH_TCP=1` puts both PGlite servers on
# TCP (127.0.0.1) instead, as issue 8's first table was measured. Both PGlite servers
# run in memory. Tables are made with server-side generation (`pgbench -i -I dtGvp`):
# pglite-socket hangs on the client-side COPY of plain `-i`.

Code.require_file("../test/support/native_server.ex", __DIR__)
Code.require_file("pgbench_runs.ex", __DIR__)
alias Bench.PgbenchRuns
{seconds, rounds} = PgbenchRuns.args(System.argv(), "10")
server = Pglite.NativeServer.start(fsync: "off", shared_buffers: "128MB")

tcp? = System.get_env("BENCH_TCP") in ["1", "true"]
{:ok, pg} = Pglite.start_link(tcp_port: 0)
c = Pglite.get_connection_opts(pg)

socket_script = Path.expand("node/node_modules/@electric-sql/pglite-socket/dist/scripts/server.js", __DIR__)

# pglite-socket on a free TCP port, or on a Unix socket in a directory of its own:
# {its Erlang port, its port number, what pgbench's -h takes}.
node_server =
  if File.exists?(socket_script) do
    {:ok, listen} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(listen)
    :gen_tcp.close(listen)
    dir = Path.join(System.tmp_dir!(), "pglite-socket-bench-#{System.unique_integer([:positive])}")
    if not tcp?, do: File.mkdir_p!(dir)
    {where, address} = if tcp?, do: {"--port=#{port}", {{127, 0, 0, 1}, port}}, else: {"--path=#{dir}/.s.PGSQL.#{port}", {{:local, "#{dir}/.s.PGSQL.#{port}"}, 0}}
    node = Port.open({:spawn_executable, System.find_executable("node")}, [:binary, :exit_status, :stderr_to_stdout, args: [socket_script, where, "--max-connections=100"]])
    Enum.find_value(1..100, fn _ -> match?({:ok, _}, :gen_tcp.connect(elem(address, 0), elem(address, 1), [])) || (Process.sleep(100) && nil) end)
    {node, port, if(tcp?, do: "127.0.0.1", else: dir)}
  else
    IO.puts("(pglite-socket not installed: npm ci --prefix bench/node to compare with it)")
    nil
  end

targets =
  [
    pglite: {if(tcp?, do: ["-h", "127.0.0.1", "-p", "#{Pglite.tcp_port(pg)}"], else: ["-h", c[:socket_dir], "-p", "#{c[:port]}"]) ++ ["-U", c[:username]], [{"PGPASSWORD", c[:password]}]},
    server: {["-h", server.host, "-p", "#{server.port}", "-U", "postgres"], []}
  ] ++
    if(node_server, do: [socket: {["-h", elem(node_server, 2), "-p", "#{elem(node_server, 1)}", "-U", "postgres"], [{"PGSSLMODE", "disable"}]}], else: [])

# The servers stop whatever happens, so a failed step leaves nothing running.
try do
  for {_, target} <- targets, do: PgbenchRuns.init!(target)

  runs = [
    {"-S, 1 client, simple", ["-S", "-c", "1", "-M", "simple"]},
    {"-S, 1 client, prepared", ["-S", "-c", "1", "-M", "prepared"]},
    {"-S, 8 clients, simple", ["-S", "-c", "8", "-j", "2", "-M", "simple"]},
    {"-S, 8 clients, prepared", ["-S", "-c", "8", "-j", "2", "-M", "prepared"]},
    {"tpcb-like, 1 client", ["-c", "1"]},
    {"tpcb-like, 8 clients", ["-c", "8", "-j", "2"]}
  ]

  num = fn x -> :erlang.float_to_binary(x, decimals: 0) end
  ratio = fn a, b -> :erlang.float_to_binary(a / b, decimals: 2) <> "x" end

  IO.puts("pgbench, #{seconds} s per run, median of #{rounds} rounds, scale 1, #{System.schedulers_online()} cores, #{Date.utc_today()}, #{PgbenchRuns.io_polling()}, PGlite servers over #{if tcp?, do: "TCP", else: "Unix sockets"}")

  IO.puts(
    Enum.map_join(["workload" | Enum.map(targets, &"#{elem(&1, 0)} tps")] ++ ["vs server"] ++ if(node_server, do: ["vs socket"], else: []), "", fn
      "workload" -> String.pad_trailing("workload", 26)
      h -> String.pad_leading(h, 12)
    end)
  )

  for {label, args} <- runs do
    results = PgbenchRuns.median_tps(targets, args, seconds, rounds)

    cells =
      Enum.map(targets, fn {name, _} -> num.(results[name]) end) ++
        [ratio.(results.pglite, results.server)] ++ if(node_server, do: [ratio.(results.pglite, results.socket)], else: [])

    IO.puts(String.pad_trailing(label, 26) <> Enum.map_join(cells, "", &String.pad_leading(&1, 12)))
  end

  # Cancel latency (psycopg's cancel_safe() to the 57014 error), same run.
  cancel_script = Path.expand("cancel_latency.py", __DIR__)

  for {name, {[_, host, _, port, _, user], env}} <- Keyword.take(targets, [:pglite, :server]) do
    out = PgbenchRuns.run!("python3", [cancel_script, "10"], env ++ [{"PGHOST", host}, {"PGPORT", port}, {"PGUSER", user}, {"PGDATABASE", "postgres"}])
    IO.puts(String.pad_trailing("#{name}", 8) <> String.trim(out))
  end

after
  Pglite.stop(pg)
  Pglite.NativeServer.stop(server)
  if node_server do
    System.cmd("kill", ["#{elem(Port.info(elem(node_server, 0), :os_pid), 1)}"])
    if not tcp?, do: File.rm_rf(elem(node_server, 2))
  end
end
