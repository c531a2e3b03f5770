# Where a round trip's time goes, one step at a time, each step measured by pgbench
# (one client) in the same run, the targets taking turns, every one on a Unix socket:
#
#   server     a PostgreSQL server from Debian's packages, directly;
#   +BEAM      the same server behind the simplest BEAM proxy: a process per client
#              forwarding bytes between its client's socket and the server's socket;
#   port+BEAM  pglite-port behind one BEAM process that answers the start-up (trust),
#              then writes whole messages to the port and its frames to the client:
#              this design with nothing but its two hops;
#   2 procs    the same, but the port belongs to a second process, written through a
#              GenServer.call and its frames sent back as messages, as `PgliteEx` and
#              its connections do (nothing else of theirs);
#   pglite     this library (`Pglite.start_link/1`), everything included.
#
# The ratios of the middle columns are ceilings for pglite on this machine. A second
# table runs 8 clients against server, +BEAM and pglite: what any front end in this
# BEAM, on these cores, leaves of the server's throughput; then the CPU time the BEAM
# (and the port) spend per transaction there.
#
#     mix run bench/round_trip_ladder.exs [seconds_per_run] [rounds]
#
# Median tps of `rounds` runs each (default 3; bench/pgbench_runs.ex).

Code.require_file("../test/support/native_server.ex", __DIR__)
Code.require_file("pgbench_runs.ex", __DIR__)
alias Bench.PgbenchRuns
{seconds, rounds} = PgbenchRuns.args(System.argv(), "4")

defmodule Ladder.Relay do
  @moduledoc false
  use GenServer

  @impl true
  def init({port, client}) do
    Port.connect(port, self())
    {:ok, {port, client}}
  end

  @impl true
  def handle_call({:write, data}, _from, {port, _} = state) do
    Port.command(port, data)
    {:reply, :ok, state}
  end

  @impl true
  def handle_info({port, {:data, frame}}, {port, client} = state) do
    send(client, {:relayed, frame})
    {:noreply, state}
  end
end

defmodule Ladder.Forward do
  @moduledoc false
  alias PgliteEx.Wire

  # Accepts clients one after another on a Unix socket in a fresh directory under
  # `parent`, named as PostgreSQL names them (`.s.PGSQL.5432`); `serve` runs each.
  # Returns the directory. The backlog holds 8 clients connecting at once.
  def listen(parent, serve) do
    dir = Path.join(parent, "#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    path = String.to_charlist(Path.join(dir, ".s.PGSQL.5432"))
    {:ok, listen} = :gen_tcp.listen(0, [:binary, ifaddr: {:local, path}, active: false, backlog: 64])
    spawn_link(fn -> accept(listen, serve) end)
    dir
  end

  defp accept(listen, serve) do
    {:ok, client} = :gen_tcp.accept(listen)
    pid = spawn(fn -> receive(do: (:go -> serve.(client))) end)
    :ok = :gen_tcp.controlling_process(client, pid)
    send(pid, :go)
    accept(listen, serve)
  end

  # +BEAM: bytes both ways.
  def to_server(client, path) do
    {:ok, server} = :gen_tcp.connect({:local, path}, 0, [:binary, active: true])
    :ok = :inet.setopts(client, active: true)
    bytes(client, server)
  end

  defp bytes(client, server) do
    receive do
      {:tcp, ^client, data} -> :gen_tcp.send(server, data) && bytes(client, server)
      {:tcp, ^server, data} -> :gen_tcp.send(client, data) && bytes(client, server)
      {:tcp_closed, _} -> :gen_tcp.close(client) && :gen_tcp.close(server)
    end
  end

  # port+BEAM and 2 procs: one client at a time has the port (pgbench -c 1 only).
  def to_port(client, owner, procs) do
    send(owner, {:lend, self()})
    process = receive(do: ({:port, process} -> process))
    startup(client)
    params = Enum.map(process.parameters, fn {k, v} -> Wire.parameter_status(k, v) end)
    :gen_tcp.send(client, [Wire.authentication(0), params, Wire.backend_key_data(1, 1), Wire.ready_for_query(?I)])
    :ok = :inet.setopts(client, active: true)

    case procs do
      1 ->
        frames(client, &Port.command(process.port, &1), "")

      2 ->
        {:ok, relay} = GenServer.start_link(Ladder.Relay, {process.port, self()})
        frames(client, &GenServer.call(relay, {:write, &1}), "")
        Port.connect(process.port, self())
        GenServer.stop(relay)
    end

    Port.connect(process.port, owner)
    send(owner, :returned)
  end

  # SSLRequest gets "N"; the StartupMessage's contents do not matter here.
  defp startup(client) do
    {:ok, <<len::32>>} = :gen_tcp.recv(client, 4)

    case :gen_tcp.recv(client, len - 4) do
      {:ok, <<80_877_103::32>>} -> :gen_tcp.send(client, "N") && startup(client)
      {:ok, _startup} -> :ok
    end
  end

  defp frames(client, write, buffer) do
    receive do
      {:tcp, ^client, data} ->
        {:ok, messages, rest} = Wire.split(buffer <> data)
        whole = for {tag, _, raw} <- messages, tag != ?X, do: raw
        if whole != [], do: write.(whole)
        unless Enum.any?(messages, &match?({?X, _, _}, &1)), do: frames(client, write, rest)

      # From the port itself, or relayed by the second process.
      {port, {:data, frame}} when is_port(port) ->
        :gen_tcp.send(client, frame) && frames(client, write, buffer)

      {:relayed, frame} ->
        :gen_tcp.send(client, frame) && frames(client, write, buffer)

      {:tcp_closed, ^client} ->
        :ok
    end
  end

  # Owns the port between clients and lends it to one at a time.
  def port_owner(process) do
    receive do
      {:lend, pid} ->
        Port.connect(process.port, pid)
        send(pid, {:port, process})
        receive(do: (:returned -> :ok))
        port_owner(process)
    end
  end
end

defmodule Ladder.Table do
  @moduledoc false

  # The column titles, laid out as `row/3` lays out its figures.
  def header(titles), do: line("workload", titles)

  # One line: the server's tps, then each other target's with its ratio to the server.
  def row(label, tps, names) do
    cells =
      for name <- names do
        figure = :erlang.float_to_binary(tps[name], decimals: 0)
        if name == :server, do: figure, else: "#{figure} (#{:erlang.float_to_binary(tps[name] / tps.server, decimals: 2)}x)"
      end

    line(label, cells)
  end

  defp line(label, cells), do: IO.puts(String.pad_trailing(label, 26) <> Enum.map_join(cells, "", &String.pad_leading(&1, 16)))
end

server = Pglite.NativeServer.start(fsync: "off", shared_buffers: "128MB")
{:ok, pg} = Pglite.start_link([])
c = Pglite.get_connection_opts(pg)
{:ok, executable} = PgliteEx.Executable.find(nil)
sockets = Path.join(System.tmp_dir!(), "ladder-#{System.unique_integer([:positive])}")
{:ok, port_process} = PgliteEx.PortProcess.open(executable: executable, env: [{"PGLITE_DATA_DIR", "memory://"}], timeout: 60_000, run_dir: System.tmp_dir!())

try do
  owner = spawn_link(fn -> Ladder.Forward.port_owner(port_process) end)
  Port.connect(port_process.port, owner)
  Process.unlink(port_process.port)
  server_socket = Path.join(server.host, ".s.PGSQL.#{server.port}")
  beam = Ladder.Forward.listen(sockets, &Ladder.Forward.to_server(&1, server_socket))
  port = Ladder.Forward.listen(sockets, &Ladder.Forward.to_port(&1, owner, 1))
  port2 = Ladder.Forward.listen(sockets, &Ladder.Forward.to_port(&1, owner, 2))

  targets = [
    server: {["-h", server.host, "-p", "#{server.port}", "-U", "postgres"], []},
    beam: {["-h", beam, "-p", "5432", "-U", "postgres"], []},
    port: {["-h", port, "-p", "5432", "-U", "postgres"], []},
    port2: {["-h", port2, "-p", "5432", "-U", "postgres"], []},
    pglite: {["-h", c[:socket_dir], "-p", "#{c[:port]}", "-U", c[:username]], [{"PGPASSWORD", c[:password]}]}
  ]

  for name <- [:server, :port, :pglite], do: PgbenchRuns.init!(targets[name])
  workloads = [{"-S, simple", ["-S", "-M", "simple"]}, {"-S, prepared", ["-S", "-M", "prepared"]}, {"tpcb-like", []}]

  IO.puts("pgbench, one client, #{seconds} s per run, median of #{rounds}, #{System.schedulers_online()} cores, #{Date.utc_today()}, #{PgbenchRuns.io_polling()}")
  Ladder.Table.header(["server", "+BEAM", "port+BEAM", "2 procs", "pglite"])

  for {label, args} <- workloads do
    Ladder.Table.row(label, PgbenchRuns.median_tps(targets, args ++ ["-c", "1"], seconds, rounds), [:server, :beam, :port, :port2, :pglite])
  end

  IO.puts("\npgbench, 8 clients (-j 8), #{seconds} s per run, median of #{rounds}")
  Ladder.Table.header(["server", "+BEAM", "pglite"])
  many = Keyword.take(targets, [:server, :beam, :pglite])

  for {label, args} <- workloads do
    Ladder.Table.row(label, PgbenchRuns.median_tps(many, args ++ ["-c", "8", "-j", "8"], seconds, rounds), [:server, :beam, :pglite])
  end

  # Where the cores go at 8 clients: this BEAM (the proxy, or pglite's front end) and the port.
  os_pids = [beam: System.pid(), port: PgliteEx.os_pid(PgliteEx.Instance.backend(pg))]
  simple = ["-S", "-M", "simple", "-c", "8", "-j", "8"]

  for name <- [:beam, :pglite] do
    cpu = PgbenchRuns.cpu_per_transaction(targets[name], simple, seconds, os_pids)
    figures = if name == :beam, do: "BEAM #{round(cpu.beam)} µs", else: "BEAM #{round(cpu.beam)} µs, pglite-port #{round(cpu.port)} µs"
    IO.puts("CPU per -S simple transaction at 8 clients, #{if name == :beam, do: "+BEAM", else: "pglite"}: #{figures}")
  end
after
  Pglite.stop(pg)
  # Its exit status comes to its owner: this process again.
  Port.connect(port_process.port, self())
  PgliteEx.PortProcess.stop(port_process)
  Pglite.NativeServer.stop(server)
  File.rm_rf(sockets)
end
