# One large message each way, through pglite's socket and through a PostgreSQL server
# from Debian's packages in the same run: a bytea parameter of N MB (client to server)
# and a text result of N MB (server to client), sent by psycopg
# (bench/large_messages.py). Prints seconds and the ratio to the server; the goal is
# within 2x at every size, i.e. a cost linear in the bytes.
#
#     mix run bench/large_messages.exs [MB ...]      (default: 1 16 64 256)

Code.require_file("../test/support/native_server.ex", __DIR__)
sizes = if System.argv() == [], do: ~w(1 16 64 256), else: System.argv()
script = Path.expand("large_messages.py", __DIR__)

run = fn env ->
  {out, 0} = System.cmd("python3", [script | sizes], env: env, stderr_to_stdout: true)
  for line <- String.split(out, "\n", trim: true), into: %{} do
    [mb, param, result] = String.split(line)
    {mb, {String.to_float(param), String.to_float(result)}}
  end
end

server = Pglite.NativeServer.start(fsync: "off")
theirs = run.([{"PGHOST", server.host}, {"PGPORT", "#{server.port}"}, {"PGUSER", "postgres"}, {"PGDATABASE", "postgres"}])
Pglite.NativeServer.stop(server)

{:ok, pg} = Pglite.start_link()
c = Pglite.get_connection_opts(pg)
ours = run.([{"PGHOST", c[:socket_dir]}, {"PGPORT", "#{c[:port]}"}, {"PGUSER", c[:username]}, {"PGPASSWORD", c[:password]}, {"PGDATABASE", c[:database]}])

IO.puts("    MB  parameter: server   pglite  ratio   result: server   pglite  ratio")
for mb <- sizes do
  {sp, sr} = theirs[mb]
  {op, or_} = ours[mb]
  :io.format("~6s  ~16.3f ~8.3f ~6.2f  ~15.3f ~8.3f ~6.2f~n", [mb, sp, op, op / sp, sr, or_, or_ / sr])
end
