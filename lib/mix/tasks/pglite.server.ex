defmodule Mix.Tasks.Pglite.Server do
  @shortdoc "Runs an embedded PostgreSQL until interrupted"
  @moduledoc """
  Starts a pglite instance (in memory unless `--data-dir` is given), prints how to
  connect with psql and with Postgrex/Ecto, and serves until interrupted.

      mix pglite.server [--data-dir DIR] [--port N] [--socket-dir DIR] [--tcp-port N]
                        [--username NAME] [--password PW] [--database NAME]
                        [--idle-in-transaction-timeout MS] [--busy-wait-us US]

  `--database NAME` (default `postgres`, created if missing): the database served
  first and printed; clients may name any other database of the cluster, served one
  at a time (`mix ecto.create` and `mix ecto.drop` work).

  `--idle-in-transaction-timeout MS` (default 10000, 0 = never): a client that holds
  the shared backend idle (in a transaction, in COPY, mid extended-protocol sequence)
  while other clients wait is disconnected with FATAL 25P03 after this long.

  `--busy-wait-us US` (default 1000, 0 = never): how long at most one BEAM scheduler
  stays busy while a lone client's request is in the port (`Pglite.start_link/1`'s
  `:busy_wait_us`).

  SIGTERM stops it cleanly (checkpoint, socket removed). On Ctrl-C the port sees its
  input close and still checkpoints before it exits.
  """
  use Mix.Task

  @switches [
    data_dir: :string,
    port: :integer,
    socket_dir: :string,
    tcp_port: :integer,
    username: :string,
    password: :string,
    database: :string,
    idle_in_transaction_timeout: :integer,
    busy_wait_us: :integer
  ]

  @impl true
  def run(args) do
    {opts, _rest, invalid} = OptionParser.parse(args, strict: @switches)
    if invalid != [], do: Mix.raise("pglite.server: unknown or invalid options #{inspect(invalid)}")
    Mix.Task.run("app.start")

    case Pglite.start_link(opts) do
      {:ok, pg} ->
        announce(pg, opts)
        System.trap_signal(:sigterm, fn -> Pglite.stop(pg) && System.stop(0) && :ok end)
        Process.sleep(:infinity)

      {:error, reason} ->
        Mix.raise("pglite.server: could not start: #{inspect(reason)}")
    end
  end

  defp announce(pg, opts) do
    c = Pglite.get_connection_opts(pg)
    where = if opts[:data_dir], do: "data in #{Path.expand(opts[:data_dir])}", else: "in memory"

    Mix.shell().info("""
    pglite is ready (PostgreSQL 17, #{where}).

      psql:     PGPASSWORD=#{c[:password]} psql -h #{c[:socket_dir]} -p #{c[:port]} -U #{c[:username]} #{c[:database]}
      Postgrex: #{inspect(c)}
    #{tcp_line(pg, c)}
    Stop with Ctrl-C (or SIGTERM).
    """)
  end

  defp tcp_line(pg, c) do
    case Pglite.tcp_port(pg) do
      nil -> ""
      port -> "  TCP:      PGPASSWORD=#{c[:password]} psql -h 127.0.0.1 -p #{port} -U #{c[:username]} #{c[:database]}\n"
    end
  end
end
