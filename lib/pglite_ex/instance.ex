defmodule PgliteEx.Instance do
  @moduledoc """
  The supervision tree of one embedded PostgreSQL:

      PgliteEx.Instance (one_for_one)
      ├── PgliteEx.Instance.Info        socket directory and connection facts
      ├── PgliteEx.Instance.MemoryDir   in memory: the files that outlive the port
      ├── PgliteEx                      the port and the one backend (restarted if it dies)
      │   └── PgliteEx.KeepAwake        busy while a lone client waits (ends with PgliteEx)
      ├── DynamicSupervisor             one PgliteEx.Server.Connection per client
      ├── Listener {:unix, path}        .s.PGSQL.<port> in a private directory
      └── Listener {:tcp, port}         127.0.0.1, when `tcp_port` is set

  When the port dies, its clients are closed with an error and `PgliteEx` starts it
  again (with back-off) on the same data, in memory too; the sockets stay where they
  are, so new clients simply reconnect.
  """
  use Supervisor

  alias PgliteEx.Server.Listener

  @doc false
  @spec start_link(PgliteEx.Options.t()) :: Supervisor.on_start()
  def start_link(opts) do
    sup_opts = if opts.name, do: [name: opts.name], else: []
    Supervisor.start_link(__MODULE__, opts, sup_opts)
  end

  @impl true
  def init(opts) do
    socket_dir = opts.socket_dir || Path.join(System.tmp_dir!(), "pglite-" <> random_name())

    # Stopped after the backend (children stop in reverse order).
    {memory_dir, memory_child} =
      if opts.memory do
        path = PgliteEx.Instance.MemoryDir.new_path()
        {path, [{PgliteEx.Instance.MemoryDir, path}]}
      else
        {nil, []}
      end

    backend = [
      executable: opts.port_executable,
      env: port_env(opts, memory_dir),
      timeout: opts.timeout,
      run_dir: socket_dir,
      idle_in_transaction_timeout: opts.idle_in_transaction_timeout,
      busy_wait_us: opts.busy_wait_us,
      database: opts.database,
      data_dir: opts.data_dir && Path.expand(opts.data_dir)
    ]

    listeners =
      [{:unix, Path.join(socket_dir, ".s.PGSQL.#{opts.port}")}] ++
        if(opts.tcp_port, do: [{:tcp, opts.tcp_port}], else: [])

    children =
      [{PgliteEx.Instance.Info, Map.merge(opts, %{socket_dir: socket_dir, own_dir: is_nil(opts.socket_dir)})}] ++
        memory_child ++
        [%{id: :backend, start: {PgliteEx, :start_link, [backend]}}, {DynamicSupervisor, strategy: :one_for_one}] ++
        Enum.map(listeners, &{Listener, endpoint: &1, instance: self(), authentication_timeout: opts.authentication_timeout})

    Supervisor.init(children, strategy: :one_for_one, max_restarts: 5, max_seconds: 10)
  end

  defp port_env(opts, memory_dir) do
    data = if opts.memory, do: "memory://", else: Path.expand(opts.data_dir)
    template = if opts.template, do: [{"PGLITE_TEMPLATE_DIR", Path.expand(opts.template)}], else: []
    # Kept at the port's clean exits (MemoryDir removes it): serving another database
    # starts the port again on it.
    memory = if memory_dir, do: [{"PGLITE_MEMORY_DIR", memory_dir}, {"PGLITE_KEEP_MEMORY_DIR", "1"}], else: []

    [{"PGLITE_DATA_DIR", data}, {"PGLITE_USERNAME", opts.username}, {"PGLITE_DATABASE", opts.database}] ++
      template ++ memory ++ opts.env
  end

  defp random_name, do: Base.url_encode64(:crypto.strong_rand_bytes(9), padding: false)

  @doc "Connection facts: socket_dir, port, tcp_port, database, username, password, scram."
  @spec info(Supervisor.supervisor()) :: map()
  def info(sup) do
    info = GenServer.call(child(sup, PgliteEx.Instance.Info), :info)

    tcp =
      Enum.find_value(Supervisor.which_children(sup), fn
        {{Listener, {:tcp, _}}, pid, _, _} when is_pid(pid) -> Listener.port(pid)
        _ -> nil
      end)

    Map.put(info, :tcp_port, tcp)
  end

  @doc "The `PgliteEx` process currently serving this instance."
  @spec backend(Supervisor.supervisor()) :: pid()
  def backend(sup), do: child(sup, :backend)

  @doc "The supervisor of this instance's client connections."
  @spec connections(Supervisor.supervisor()) :: pid()
  def connections(sup), do: child(sup, DynamicSupervisor)

  defp child(sup, id) do
    Enum.find_value(Supervisor.which_children(sup), fn
      {^id, pid, _, _} when is_pid(pid) -> pid
      _ -> nil
    end) || exit({:noproc, {__MODULE__, id}})
  end
end
