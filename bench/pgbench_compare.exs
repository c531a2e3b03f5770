# pgbench against this library's socket and against a PostgreSQL server from Debian's
# packages on the same machine, in one run; prints tps and the ratio to the server,
# then the cancel latency of both (bench/cancel_latency.py).
#
#     mix run bench/pgbench_compare.exs [seconds_per_run]
#
# The server runs from a temporary directory on a Unix socket with fsync off (like
# pglite's default) and shared_buffers=128MB; pglite runs in memory.

seconds = System.argv() |> List.first() |> Kernel.||("10")

run = fn cmd, args, env ->
  case System.cmd(cmd, args, env: env, stderr_to_stdout: true) do
    {out, 0} -> out
    {out, status} -> raise "#{cmd} #{Enum.join(args, " ")} failed (#{status}):\n#{out}"
  end
end

Code.require_file("../test/support/native_server.ex", __DIR__)
server = Pglite.NativeServer.start(fsync: "off", shared_buffers: "128MB")
root = server.host

{:ok, pg} = Pglite.start_link()
c = Pglite.get_connection_opts(pg)

targets = [
  pglite: {["-h", c[:socket_dir], "-p", "#{c[:port]}", "-U", c[:username]], [{"PGPASSWORD", c[:password]}]},
  server: {["-h", root, "-p", "5432", "-U", "postgres"], []}
]

for {_, {conn, env}} <- targets, do: run.("pgbench", conn ++ ["-i", "-q", "-s", "1", "postgres"], env)

runs = [
  {"-S, 1 client, simple", ["-S", "-c", "1", "-M", "simple"]},
  {"-S, 1 client, prepared", ["-S", "-c", "1", "-M", "prepared"]},
  {"-S, 8 clients, simple", ["-S", "-c", "8", "-j", "2", "-M", "simple"]},
  {"-S, 8 clients, prepared", ["-S", "-c", "8", "-j", "2", "-M", "prepared"]},
  {"tpcb-like, 1 client", ["-c", "1"]},
  {"tpcb-like, 8 clients", ["-c", "8", "-j", "2"]}
]

tps = fn out -> [_, v] = Regex.run(~r/tps = ([\d.]+) \(without initial/, out); String.to_float(v) end

IO.puts("pgbench, #{seconds} s per run, scale 1, #{System.schedulers_online()} cores, #{Date.utc_today()}")
IO.puts(String.pad_trailing("workload", 28) <> String.pad_leading("pglite tps", 12) <> String.pad_leading("server tps", 12) <> String.pad_leading("ratio", 8))

for {label, args} <- runs do
  [ours, theirs] =
    for {_, {conn, env}} <- targets, do: tps.(run.("pgbench", conn ++ args ++ ["-T", seconds, "postgres"], env))

  IO.puts(
    String.pad_trailing(label, 28) <>
      String.pad_leading(:erlang.float_to_binary(ours, decimals: 0), 12) <>
      String.pad_leading(:erlang.float_to_binary(theirs, decimals: 0), 12) <>
      String.pad_leading(:erlang.float_to_binary(ours / theirs, decimals: 2) <> "x", 8)
  )
end

# Cancel latency (psycopg's cancel_safe() to the 57014 error), same run, both targets.
cancel_script = Path.expand("cancel_latency.py", __DIR__)

for {name, {[_, host, _, port, _, user], env}} <- targets do
  out = run.("python3", [cancel_script, "10"], env ++ [{"PGHOST", host}, {"PGPORT", port}, {"PGUSER", user}, {"PGDATABASE", "postgres"}])
  IO.puts(String.pad_trailing("#{name}", 8) <> String.trim(out))
end

Pglite.stop(pg)
Pglite.NativeServer.stop(server)
