defmodule Pglite do
  @moduledoc """
  A private PostgreSQL 17, embedded: no server to install.

  Each instance runs the PGlite build of PostgreSQL under Wasmer in a `pglite-port`
  OS process and serves it on a Unix socket (and, if asked, TCP on 127.0.0.1) that
  Postgrex, Ecto, psql, pgbench and any other PostgreSQL client connect to.

      {:ok, pg} = Pglite.start_link()
      {:ok, conn} = Postgrex.start_link(Pglite.get_connection_opts(pg))
      Postgrex.query!(conn, "SELECT 1", [])

  Or without any client library:

      {:ok, %{rows: [["2"]]}} = Pglite.query(pg, "SELECT 1 + 1")

  ## Options

    * `:database` - the database served first and named by `get_connection_opts/1`,
      created on first start if missing (default `"postgres"`); clients may connect to
      any other database of the cluster, served one at a time (see `PgliteEx.Databases`)
    * `:username` - the only user clients may log in as (default `"postgres"`)
    * `:password` - checked with SCRAM-SHA-256 (default `"postgres"`)
    * `:data_dir` - keep the data in this directory (created on first use); giving it
      implies `memory: false`
    * `:memory` - keep the data in memory only (default `true` unless `:data_dir` is given)
    * `:template` - start from this stopped data directory (see `Pglite.Template`)
      instead of an empty cluster: an in-memory instance reads it copy on write, so
      it starts as fast as an empty one and the template is never changed; a new
      `data_dir` is a copy of it. While instances read it, none can run on it.
    * `:timeout` - how long to wait for PostgreSQL to be ready, in ms (default 60_000;
      the very first start on a machine compiles PostgreSQL, about 10 s)
    * `:name` - register the instance under this name
    * `:tcp_port` - also listen on 127.0.0.1: `0` for any free port, or a port number
      (default `nil`: no TCP)
    * `:port` - the number in the Unix socket's name `.s.PGSQL.<port>` (default 5432)
    * `:socket_dir` - where the Unix socket goes (default: a fresh private directory,
      mode 0700, removed on stop)
    * `:port_executable` - path of the `pglite-port` binary (default: the one this
      library was compiled with)
    * `:env` - extra environment for the port, e.g. `[{"PGLITE_DEBUG", "2"}]`
    * `:idle_in_transaction_timeout` - ms a client may hold the shared backend idle (in
      a transaction, in COPY, mid extended-protocol sequence) while other clients wait;
      then it is disconnected with FATAL 25P03 and the others go on (default 10_000;
      `0` = never)
    * `:authentication_timeout` - ms a new client may take to log in (start-up packet
      and SCRAM exchange) before it is closed with FATAL 57014, as a server's
      `authentication_timeout` (default 60_000)
    * `:busy_wait_us` - µs at most that one BEAM scheduler stays busy (yielding) while
      the request of a client alone with the backend (it sent the one before too, or
      it is inside its transaction) is in the port, so the reply is seen at once
      instead of after a scheduler wakes (default 1_000, up to 100_000; `0` = never;
      see the README's Performance section)

  ## Errors

  `start_link/1` returns `{:error, reason}` with a readable reason:
  `{:invalid_option, option}`, `:port_executable_not_found`, `:startup_timeout`,
  `{:data_dir_in_use, path}`, `{:template_in_use, path}` (an instance runs on the
  template: stop it first), `{:template_not_stopped, path}` (it was killed, not
  stopped: start and stop it once), `{:bad_data_dir, why}` (PostgreSQL cannot start on
  the data directory: another major version, a damaged control file or WAL, a
  directory it cannot write; `why` says what to do) or
  `{:port_exited, status, stderr_tail}`.
  """

  alias PgliteEx.{Instance, Options, Wire}

  @type instance :: Supervisor.supervisor()

  @doc """
  Starts an instance and returns once PostgreSQL is ready for clients.

      {:ok, pg} = Pglite.start_link(data_dir: "priv/pg", tcp_port: 0)
  """
  @spec start_link(keyword()) :: {:ok, pid()} | {:error, term()}
  def start_link(opts \\ []) do
    with {:ok, opts} <- Options.validate(opts),
         {:ok, executable} <- PgliteEx.Executable.find(opts.port_executable) do
      start_instance(%{opts | port_executable: executable})
    end
  end

  # A failing start must come back as {:error, reason}, not as an exit signal that
  # takes the caller down with it.
  defp start_instance(opts) do
    trapping = Process.flag(:trap_exit, true)

    try do
      case Instance.start_link(opts) do
        {:ok, pid} ->
          {:ok, pid}

        {:error, reason} ->
          receive do
            {:EXIT, _pid, _} -> :ok
          after
            1_000 -> :ok
          end

          {:error, unwrap(reason)}
      end
    after
      Process.flag(:trap_exit, trapping)
    end
  end

  defp unwrap({:shutdown, {:failed_to_start_child, _id, reason}}), do: unwrap(reason)
  defp unwrap(reason), do: reason

  @doc """
  A child specification, so an instance can sit in your supervision tree:

      children = [{Pglite, name: MyApp.DB, data_dir: "priv/db"}]
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    %{id: Keyword.get(opts, :name, __MODULE__), start: {__MODULE__, :start_link, [opts]}, type: :supervisor}
  end

  @doc """
  Options for `Postgrex.start_link/1` or an Ecto repo's configuration, unchanged:
  `socket_dir`, `port`, `database`, `username` and `password`.

      Postgrex.start_link(Pglite.get_connection_opts(pg) ++ [pool_size: 10])
  """
  @spec get_connection_opts(instance()) :: keyword()
  def get_connection_opts(instance) do
    info = Instance.info(instance)

    [
      socket_dir: info.socket_dir,
      port: info.port,
      database: info.database,
      username: info.username,
      password: info.password
    ]
  end

  @doc """
  The TCP port the instance listens on at 127.0.0.1, or `nil` without `tcp_port`.
  """
  @spec tcp_port(instance()) :: non_neg_integer() | nil
  def tcp_port(instance), do: Instance.info(instance).tcp_port

  @doc """
  `:ok` when the backend answers a query, `{:error, reason}` otherwise.
  """
  @spec health_check(instance(), timeout()) :: :ok | {:error, term()}
  def health_check(instance, timeout \\ 5_000) do
    case query(instance, "SELECT 1", timeout) do
      {:ok, %{rows: [["1"]]}} -> :ok
      {:ok, other} -> {:error, {:unexpected, other}}
      {:error, _} = error -> error
    end
  end

  @doc """
  Runs SQL as one simple query, without any client library. Values come back as text
  (`nil` for NULL); with several statements, the last result is returned. A
  transaction the SQL leaves open is rolled back.

      {:ok, %{columns: ["n"], rows: [["42"]], command: "SELECT 1"}} =
        Pglite.query(pg, "SELECT 42 AS n")

      {:error, %{code: "42P01", message: ~s(relation "nope" does not exist)}} =
        Pglite.query(pg, "SELECT * FROM nope")
  """
  @spec query(instance(), String.t(), timeout()) ::
          {:ok, %{columns: [String.t()], rows: [[String.t() | nil]], command: String.t()}}
          | {:error, %{code: String.t(), message: String.t(), severity: String.t()}}
          | {:error, term()}
  def query(instance, sql, timeout \\ 15_000) when is_binary(sql) do
    case PgliteEx.simple_query(Instance.backend(instance), sql, timeout) do
      {:ok, messages} -> result(messages)
      {:error, _} = error -> error
    end
  catch
    :exit, reason -> {:error, {:exit, reason}}
  end

  defp result(messages) do
    Enum.reduce_while(messages, %{columns: [], rows: [], command: nil}, fn
      {?E, body}, _acc ->
        f = Wire.fields(body)
        {:halt, {:error, %{code: f[?C], message: f[?M], severity: f[?S]}}}

      {?T, <<_count::16, body::binary>>}, _acc ->
        {:cont, %{columns: column_names(body, []), rows: [], command: nil}}

      {?D, body}, acc ->
        {:cont, %{acc | rows: [Wire.data_row(body) | acc.rows]}}

      {?C, tag}, acc ->
        {:cont, %{acc | command: String.trim_trailing(tag, <<0>>), rows: Enum.reverse(acc.rows)}}

      _other, acc ->
        {:cont, acc}
    end)
    |> case do
      {:error, _} = error -> error
      acc -> {:ok, acc}
    end
  end

  defp column_names("", acc), do: Enum.reverse(acc)

  defp column_names(body, acc) do
    {name, <<_::binary-size(18), rest::binary>>} = Wire.cstring(body)
    column_names(rest, [name | acc])
  end

  @doc """
  Writes a plain-SQL dump of the instance's database to `path`, made by PostgreSQL 17's
  own pg_dump (bundled, run under Wasmer); load it into a server PostgreSQL with
  `psql -f`. The file is replaced only when the dump succeeded.

      :ok = Pglite.dump(pg, "backup.sql")
      {:error, {:pg_dump_failed, 1, "cannot write the dump into /nope: ..."}} = Pglite.dump(pg, "/nope/x.sql")
  """
  @spec dump(instance(), Path.t(), timeout()) :: :ok | {:error, term()}
  def dump(instance, path, timeout \\ 300_000), do: PgliteEx.Dump.run(instance, path, timeout)

  @doc """
  Stops the instance: clients are closed, PostgreSQL checkpoints and exits, the socket
  directory is removed. Data in a `data_dir` is safe on disk afterwards.
  """
  @spec stop(instance(), timeout()) :: :ok
  def stop(instance, timeout \\ 30_000), do: Supervisor.stop(instance, :normal, timeout)
end
