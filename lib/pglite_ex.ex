defmodule PgliteEx do
  @moduledoc """
  The process that owns one `pglite-port` OS process and shares its single PostgreSQL
  backend among many clients.

  ## Sharing the backend

  A client holds the backend for a whole unit of work: a simple Query, extended-protocol
  messages up to and including their Sync (an unfinished sequence, such as one waiting
  after Flush, keeps holding), a COPY to its end, and everything while its transaction
  is open (ReadyForQuery `T` or `E`). Other clients wait in arrival order.

  Clients call `submit/3` with whole frontend messages and a note of how many
  ReadyForQuery replies they will produce; the backend's replies come back as
  `{:pglite_backend, pid, iodata}` messages. When a client dies, whatever it left
  (a COPY, an open extended sequence, a transaction, its prepared statements) is ended
  here before the next client runs.

  If the port exits, every waiting caller gets an error and this process stops with
  `{:port_exited, status, stderr_tail}`, so its supervisor restarts it.
  """
  use GenServer
  require Logger

  alias PgliteEx.Wire

  @typedoc "What a client says about a payload it submits."
  @type meta :: %{
          required(:rfq) => non_neg_integer(),
          required(:open) => boolean(),
          optional(:prepared) => [String.t()],
          optional(:closed) => [String.t()],
          optional(:deferrable) => boolean()
        }

  @stop_timeout 15_000

  defstruct [
    :port,
    :os_pid,
    :stderr_path,
    :data_dir,
    buffer: "",
    parameters: [],
    status: ?I,
    expected: 0,
    open: false,
    in_copy: false,
    holder: nil,
    queue: :queue.new(),
    clients: %{},
    next_id: 1
  ]

  ## API

  @doc """
  Starts the port and waits for its ready frame. Options: `:executable` (path of
  pglite-port), `:env` (list of `{name, value}`), `:timeout`, `:run_dir` (where the
  port's stderr is kept), `:data_dir` (for error messages), `:name`.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    GenServer.start_link(__MODULE__, opts, Keyword.take(opts, [:name]) ++ [timeout: opts[:timeout] + 5_000])
  end

  @doc "Registers the calling client; returns its id and the server's parameters."
  @spec register(GenServer.server()) :: {:ok, pos_integer(), [{String.t(), String.t()}]}
  def register(server), do: GenServer.call(server, :register)

  @doc """
  Sends whole frontend messages to the backend once the caller holds it (waiting in
  line if needed). Returns when the payload has been written to the port.

  A `deferrable` payload (only Parse messages and a Sync) is not queued while another
  client holds the backend: the answer is `:deferred`, and the caller acknowledges the
  Parse itself and sends it ahead of its next payload. Clients such as pgbench prepare
  synchronously on a thread that also serves other connections, one of which may hold
  the backend in a transaction; waiting there would deadlock.
  """
  @spec submit(GenServer.server(), iodata(), meta()) :: :ok | :deferred | {:error, term()}
  def submit(server, payload, meta), do: GenServer.call(server, {:submit, payload, meta}, :infinity)

  @doc """
  Runs `sql` as one simple query in its own turn. A transaction it leaves open is
  rolled back. Returns the backend's messages up to ReadyForQuery.
  """
  @spec simple_query(GenServer.server(), String.t(), timeout()) :: {:ok, [{byte(), binary()}]} | {:error, term()}
  def simple_query(server, sql, timeout), do: GenServer.call(server, {:query, sql}, timeout)

  @doc "The OS pid of the port process."
  @spec os_pid(GenServer.server()) :: non_neg_integer()
  def os_pid(server), do: GenServer.call(server, :os_pid)

  ## Start-up

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    stderr_path = Path.join(opts[:run_dir], "port-#{System.unique_integer([:positive])}.log")
    File.write!(stderr_path, "")

    # sh only redirects stderr to a file (stdout carries frames), then becomes the port.
    port =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :binary,
        {:packet, 4},
        :exit_status,
        args: ["-c", ~s(exec "$0" 2>>"$1"), opts[:executable], stderr_path],
        env: Enum.map(opts[:env], fn {k, v} -> {String.to_charlist(k), String.to_charlist(v)} end)
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    state = %__MODULE__{port: port, os_pid: os_pid, stderr_path: stderr_path, data_dir: opts[:data_dir]}

    receive do
      {^port, {:data, frame}} ->
        {:ok, messages, ""} = Wire.split(frame)
        params = for {?S, body, _} <- messages, do: body |> :binary.split(<<0>>, [:global]) |> Enum.take(2) |> List.to_tuple()
        {:ok, %{state | parameters: params}}

      {^port, {:exit_status, status}} ->
        {:stop, startup_error(status, stderr_tail(state))}
    after
      opts[:timeout] ->
        System.cmd("kill", ["-9", Integer.to_string(os_pid)], stderr_to_stdout: true)
        {:stop, :startup_timeout}
    end
  end

  defp startup_error(4, tail) do
    case Regex.run(~r/data directory (.+) is in use/, tail) do
      [_, path] -> {:data_dir_in_use, path}
      _ -> {:port_exited, 4, tail}
    end
  end

  defp startup_error(status, tail), do: {:port_exited, status, tail}

  ## Calls

  @impl true
  def handle_call(:register, {pid, _}, state) do
    id = state.next_id
    client = %{id: id, ref: Process.monitor(pid), statements: MapSet.new()}
    {:reply, {:ok, id, state.parameters}, %{state | clients: Map.put(state.clients, pid, client), next_id: id + 1}}
  end

  def handle_call(:os_pid, _from, state), do: {:reply, state.os_pid, state}

  def handle_call({:submit, payload, meta}, {pid, _} = from, state) do
    state = note_statements(state, pid, meta)

    cond do
      state.holder == {:client, pid} ->
        {:reply, :ok, write(state, payload, meta)}

      state.holder == nil and :queue.is_empty(state.queue) ->
        {:reply, :ok, write(%{state | holder: {:client, pid}}, payload, meta)}

      Map.get(meta, :deferrable, false) ->
        {:reply, :deferred, state}

      true ->
        {:noreply, enqueue(state, {:submit, from, payload, meta})}
    end
  end

  def handle_call({:query, sql}, from, state) do
    state = enqueue(state, {:query, from, sql})
    {:noreply, if(state.holder == nil, do: next(state), else: state)}
  end

  ## Port output

  @impl true
  def handle_info({port, {:data, frame}}, %{port: port} = state) do
    {:ok, messages, rest} = Wire.split(state.buffer <> frame)
    state = Enum.reduce(messages, %{state | buffer: rest}, &track/2)
    state = deliver(state, messages)
    {:noreply, maybe_release(state)}
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = state) do
    tail = stderr_tail(state)
    Logger.error("pglite-port exited with status #{status}: #{tail}")
    fail_everyone(state, {:port_exited, status})
    {:stop, {:port_exited, status, tail}, %{state | port: nil}}
  end

  def handle_info({:DOWN, ref, :process, pid, _reason}, state) do
    case Map.pop(state.clients, pid) do
      {%{ref: ^ref} = client, clients} -> {:noreply, client_gone(%{state | clients: clients}, pid, client)}
      _ -> {:noreply, state}
    end
  end

  def handle_info({:EXIT, port, _reason}, %{port: port} = state), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}
  def handle_info(_other, state), do: {:noreply, state}

  # Follow the backend's state: replies still owed, transaction status, COPY IN.
  defp track({?Z, <<status>>, _}, state),
    do: %{state | status: status, expected: max(state.expected - 1, 0), in_copy: false}

  defp track({?G, _, _}, state), do: %{state | in_copy: true}
  defp track(_message, state), do: state

  defp deliver(state, []), do: state

  defp deliver(%{holder: {:client, pid}} = state, messages) do
    send(pid, {:pglite_backend, self(), Enum.map(messages, &elem(&1, 2))})
    state
  end

  defp deliver(%{holder: {:query, from, acc}} = state, messages) do
    %{state | holder: {:query, from, acc ++ Enum.map(messages, fn {tag, body, _} -> {tag, body} end)}}
  end

  defp deliver(state, _messages), do: state

  # Hand the backend on once its holder has nothing left in flight.
  defp maybe_release(%{expected: 0} = state) do
    case state.holder do
      {:client, _} when state.open or state.status != ?I ->
        state

      {:client, _} ->
        next(%{state | holder: nil})

      {:query, from, acc} when state.status != ?I ->
        # A one-shot query must not leave its transaction to the next client.
        write(%{state | holder: {:rollback, from, acc}}, Wire.query("ROLLBACK"), %{rfq: 1, open: false})

      {:query, from, acc} ->
        GenServer.reply(from, {:ok, acc})
        next(%{state | holder: nil})

      {:rollback, from, acc} ->
        GenServer.reply(from, {:ok, acc})
        next(%{state | holder: nil})

      {:cleanup, _, _} ->
        cleanup(state)

      nil ->
        state
    end
  end

  defp maybe_release(state), do: state

  ## The line of waiting clients

  defp enqueue(state, item), do: %{state | queue: :queue.in(item, state.queue)}

  defp next(%{holder: nil} = state) do
    case :queue.out(state.queue) do
      {:empty, _} ->
        state

      {{:value, {:submit, {pid, _} = from, payload, meta}}, queue} ->
        GenServer.reply(from, :ok)
        write(%{state | queue: queue, holder: {:client, pid}}, payload, meta)

      {{:value, {:query, from, sql}}, queue} ->
        write(%{state | queue: queue, holder: {:query, from, []}}, Wire.query(sql), %{rfq: 1, open: false})

      {{:value, {:cleanup, statements}}, queue} ->
        cleanup(%{state | queue: queue, holder: {:cleanup, statements, :sync}})
    end
  end

  defp write(state, payload, meta) do
    Port.command(state.port, payload)
    %{state | expected: state.expected + meta.rfq, open: meta.open}
  end

  defp note_statements(state, pid, meta) do
    case state.clients do
      %{^pid => client} ->
        statements =
          client.statements
          |> MapSet.union(MapSet.new(Map.get(meta, :prepared, [])))
          |> MapSet.difference(MapSet.new(Map.get(meta, :closed, [])))

        %{state | clients: Map.put(state.clients, pid, %{client | statements: statements})}

      _ ->
        state
    end
  end

  ## A client that went away

  defp client_gone(state, pid, client) do
    queue = :queue.filter(fn item -> not match?({:submit, {^pid, _}, _, _}, item) end, state.queue)
    state = %{state | queue: queue}

    cond do
      state.holder == {:client, pid} ->
        # End a COPY IN first: the backend waits for its data otherwise.
        state = if state.in_copy, do: write(state, Wire.message(?f, ["client went away", 0]), %{rfq: 0, open: true}), else: state
        state = %{state | holder: {:cleanup, client.statements, :sync}}
        if state.expected == 0, do: cleanup(state), else: state

      MapSet.size(client.statements) > 0 ->
        state = enqueue(state, {:cleanup, client.statements})
        if state.holder == nil, do: next(state), else: state

      true ->
        state
    end
  end

  # Called whenever no reply is owed: Sync, then ROLLBACK if needed, then close the
  # client's statements, then the next client.
  defp cleanup(%{holder: {:cleanup, statements, :sync}} = state) do
    write(%{state | holder: {:cleanup, statements, :rollback}}, Wire.sync(), %{rfq: 1, open: false})
  end

  defp cleanup(%{holder: {:cleanup, statements, :rollback}} = state) do
    state = %{state | holder: {:cleanup, statements, :close}}
    if state.status == ?I, do: cleanup(state), else: write(state, Wire.query("ROLLBACK"), %{rfq: 1, open: false})
  end

  defp cleanup(%{holder: {:cleanup, statements, :close}} = state) do
    state = %{state | holder: {:cleanup, statements, :done}}

    if MapSet.size(statements) == 0 do
      cleanup(state)
    else
      closes = Enum.map(statements, &Wire.message(?C, [?S, &1, 0]))
      write(state, [closes, Wire.sync()], %{rfq: 1, open: false})
    end
  end

  defp cleanup(%{holder: {:cleanup, _, :done}} = state), do: next(%{state | holder: nil})

  ## Failure and shutdown

  defp fail_everyone(state, reason) do
    for {:submit, from, _, _} <- :queue.to_list(state.queue), do: GenServer.reply(from, {:error, reason})

    for {:query, from, _} <- :queue.to_list(state.queue), do: GenServer.reply(from, {:error, reason})

    case state.holder do
      {:query, from, _} -> GenServer.reply(from, {:error, reason})
      {:rollback, from, _} -> GenServer.reply(from, {:error, reason})
      _ -> :ok
    end

    for {pid, _} <- state.clients, do: send(pid, {:pglite_down, self(), reason})
  end

  @impl true
  def terminate(_reason, %{port: nil}), do: :ok

  def terminate(_reason, state) do
    # Terminate makes the port checkpoint and exit 0: committed data is on disk.
    fail_everyone(state, :shutdown)
    Port.command(state.port, Wire.terminate())

    receive do
      {port, {:exit_status, _}} when port == state.port -> :ok
    after
      @stop_timeout ->
        Logger.error("pglite-port did not stop in time; killing it")
        System.cmd("kill", ["-9", Integer.to_string(state.os_pid)], stderr_to_stdout: true)
    end

    File.rm(state.stderr_path)
    :ok
  end

  defp stderr_tail(state) do
    case File.read(state.stderr_path) do
      {:ok, text} -> text |> String.split("\n", trim: true) |> Enum.take(-20) |> Enum.join("\n")
      _ -> ""
    end
  end
end
