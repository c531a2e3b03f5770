defmodule Pglite.TestClients do
  @moduledoc "Runs real PostgreSQL clients (psql, pgbench, psycopg 3, node-postgres, JDBC) against an instance."

  @jdbc_jar "/usr/share/java/postgresql.jar"

  @doc "psql over the instance's Unix socket (or `host:`/`port:` overrides); returns {output, status}."
  def psql(pg, sql, opts \\ []) do
    c = Pglite.get_connection_opts(pg)
    host = Keyword.get(opts, :host, c[:socket_dir])
    port = Keyword.get(opts, :port, c[:port])
    password = Keyword.get(opts, :password, c[:password])
    user = Keyword.get(opts, :user, c[:username])
    db = Keyword.get(opts, :database, c[:database])

    System.cmd(
      "psql",
      ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", "#{port}", "-U", user, "-d", db, "-c", sql],
      env: [{"PGPASSWORD", password}, {"PGCONNECT_TIMEOUT", "10"} | Keyword.get(opts, :env, [])],
      stderr_to_stdout: true
    )
  end

  @doc "pgbench with the instance's connection settings; returns {output, status}."
  def pgbench(pg, args) do
    c = Pglite.get_connection_opts(pg)

    System.cmd("pgbench", ["-h", c[:socket_dir], "-p", "#{c[:port]}", "-U", c[:username]] ++ args ++ [c[:database]],
      env: [{"PGPASSWORD", c[:password]}],
      stderr_to_stdout: true
    )
  end

  @doc "Runs test/clients/<script>.py with the instance's settings in the environment."
  def python(pg, script, args \\ []) do
    path = Path.expand("../clients/#{script}.py", __DIR__)
    System.cmd("python3", [path | args], env: libpq_env(pg), stderr_to_stdout: true)
  end

  @doc """
  Runs test/clients/<script>.py against a new `Pglite.NativeServer` (trust, as
  postgres), which is stopped after; returns {output, status}.
  """
  def python_on_a_server(script), do: on_a_server("python3", Path.expand("../clients/#{script}.py", __DIR__))

  @doc """
  Runs test/clients/<script>.py against `pg` and against a PostgreSQL server: both
  transcripts, as lines. Raises with the output if the script fails on either.
  """
  def transcripts(pg, script) do
    lines = fn
      {out, 0} -> String.split(out, "\n", trim: true)
      {out, status} -> raise "#{script}.py exited with #{status}:\n#{out}"
    end

    {lines.(python(pg, script)), lines.(python_on_a_server(script))}
  end

  @doc "Runs test/clients/node/<script>.js against a new `Pglite.NativeServer`, as `python_on_a_server/1`."
  def node_on_a_server(script), do: on_a_server("node", Path.expand("../clients/node/#{script}.js", __DIR__))

  defp on_a_server(command, path) do
    server = Pglite.NativeServer.start()
    env = [{"PGHOST", server.host}, {"PGPORT", "#{server.port}"}, {"PGUSER", "postgres"}, {"PGDATABASE", "postgres"}]

    try do
      System.cmd(command, [path], env: env, stderr_to_stdout: true)
    after
      Pglite.NativeServer.stop(server)
    end
  end

  @doc "Runs test/clients/node/<script>.js (node-postgres reads the same PG* variables)."
  def node(pg, script) do
    path = Path.expand("../clients/node/#{script}.js", __DIR__)
    System.cmd("node", [path], env: libpq_env(pg), stderr_to_stdout: true)
  end

  @doc """
  Runs test/clients/jdbc/<program>.java with Debian's PostgreSQL JDBC driver, over the
  instance's TCP port (JDBC speaks TCP only): start the instance with `tcp_port: 0`.
  """
  def jdbc(pg, program) do
    path = Path.expand("../clients/jdbc/#{program}.java", __DIR__)
    c = Pglite.get_connection_opts(pg)

    env = [
      {"PGHOST", "127.0.0.1"},
      {"PGPORT", "#{Pglite.tcp_port(pg)}"},
      {"PGUSER", c[:username]},
      {"PGPASSWORD", c[:password]},
      {"PGDATABASE", c[:database]}
    ]

    System.cmd("java", ["-cp", @jdbc_jar, path], env: env, stderr_to_stdout: true)
  end

  defp libpq_env(pg) do
    c = Pglite.get_connection_opts(pg)

    [
      {"PGHOST", c[:socket_dir]},
      {"PGPORT", "#{c[:port]}"},
      {"PGUSER", c[:username]},
      {"PGPASSWORD", c[:password]},
      {"PGDATABASE", c[:database]}
    ]
  end

  @doc """
  Starts psql as a long-running OS process fed through a port, for tests that kill a
  client in the middle of something (`database:` another than the instance's).
  Returns {port, os_pid}.
  """
  def open_psql(pg, opts \\ []) do
    c = Keyword.merge(Pglite.get_connection_opts(pg), opts)
    psql = System.find_executable("psql")

    port =
      Port.open({:spawn_executable, psql}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        args: ["-X", "-q", "-A", "-t", "-h", c[:socket_dir], "-p", "#{c[:port]}", "-U", c[:username], "-d", c[:database]],
        env: [{~c"PGPASSWORD", String.to_charlist(c[:password])}]
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    {port, os_pid}
  end

  @doc "Waits until `port` prints something matching `pattern`."
  def await_output(port, pattern, acc \\ "") do
    if acc =~ pattern do
      acc
    else
      receive do
        {^port, {:data, data}} -> await_output(port, pattern, acc <> data)
      after
        15_000 -> raise "psql never printed #{inspect(pattern)}; got #{inspect(acc)}"
      end
    end
  end

  def kill9(os_pid), do: System.cmd("kill", ["-9", "#{os_pid}"])
end
