# One large message each way, through pglite's socket and through a PostgreSQL server
# from Debian's packages in the same run: a bytea parameter of N MB (client to server)
# and a text result of N MB (server to client), sent by psycopg
# (bench/large_messages.py). Prints seconds and the ratio to the server; the goal is
# within 2x at every size, i.e. a cost linear in the bytes. Then the resident memory of
# what served the connection (the server's backend, pglite's port) at the start and
# 2 s after each size: a big message's memory should go back, as a server's does.
#
#     mix run bench/large_messages.exs [MB ...]      (default: 1 16 64 256)

Code.require_file("../test/support/native_server.ex", __DIR__)
sizes = if System.argv() == [], do: ~w(1 16 64 256), else: System.argv()
script = Path.expand("large_messages.py", __DIR__)

run = fn env ->
  {out, 0} = System.cmd("python3", [script | sizes], env: env, stderr_to_stdout: true)
  for line <- String.split(out, "\n", trim: true), into: %{} do
    case String.split(line) do
      ["idle", rss] -> {"idle", String.to_integer(rss)}
      [mb, param, result, rss] -> {mb, {String.to_float(param), String.to_float(result), String.to_integer(rss)}}
    end
  end
end

server = Pglite.NativeServer.start(fsync: "off")
theirs = run.([{"PGHOST", server.host}, {"PGPORT", "#{server.port}"}, {"PGUSER", "postgres"}, {"PGDATABASE", "postgres"}])
Pglite.NativeServer.stop(server)

{:ok, pg} = Pglite.start_link()
c = Pglite.get_connection_opts(pg)
os_pid = PgliteEx.os_pid(PgliteEx.Instance.backend(pg))
ours =
  run.([
    {"PGHOST", c[:socket_dir]},
    {"PGPORT", "#{c[:port]}"},
    {"PGUSER", c[:username]},
    {"PGPASSWORD", c[:password]},
    {"PGDATABASE", c[:database]},
    {"BACKEND_OS_PID", "#{os_pid}"}
  ])

IO.puts("    MB  parameter: server   pglite  ratio   result: server   pglite  ratio")
for mb <- sizes do
  {sp, sr, _} = theirs[mb]
  {op, or_, _} = ours[mb]
  :io.format("~6s  ~16.3f ~8.3f ~6.2f  ~15.3f ~8.3f ~6.2f~n", [mb, sp, op, op / sp, sr, or_, or_ / sr])
end

IO.puts("\nresident MB 2 s after:  server backend   pglite port   (growth over idle: server, pglite)")
:io.format("~22s ~17w ~13w~n", ["idle", theirs["idle"], ours["idle"]])
for mb <- sizes do
  {_, _, s} = theirs[mb]
  {_, _, o} = ours[mb]
  :io.format("~22s ~17w ~13w   (+~w, +~w)~n", ["#{mb} MB each way", s, o, s - theirs["idle"], o - ours["idle"]])
end
