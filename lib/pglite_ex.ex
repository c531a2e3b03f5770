defmodule PgliteEx do
  @moduledoc """
  The process that owns one `pglite-port` and shares its single PostgreSQL backend
  among many clients, so that each of them sees what it would see on a server.

  ## Turns

  A client holds the backend for a whole unit of work: a simple Query, extended-protocol
  messages up to and including their Sync (an unfinished sequence, such as one waiting
  after Flush, keeps holding), a COPY to its end, and everything while its transaction
  is open (ReadyForQuery `T` or `E`). Other clients wait in arrival order; who goes
  next when the backend is free is decided by `PgliteEx.Turns`, a pure function.

  Clients call `submit/3` with whole frontend messages and a note of what they mean;
  the backend's replies come back as `{:pglite_backend, pid, iodata}` messages.

  What the holder has in flight is followed reply by reply (`PgliteEx.InFlight`, a
  model of PostgreSQL's message loop, errors that skip to Sync included): its turn
  can end only when nothing is owed. When everything the holder has in flight surely
  ends its turn (`:ends_turn`, see `PgliteEx.Server.TurnEnd`) and the next waiting
  client needs nothing done between turns, that client's request is written to the
  port right behind it: the backend goes on to it without waiting for the BEAM, and
  the replies belong to the holder until nothing is owed to it. A cancel names the
  port frames of the request it is for.

  ## Between turns

  Work of the house runs between turns, never inside one:

    * after a turn that may have changed the client's session, its settings (custom
      ones too), TEMP relations, prepared statements, cursors and channels are captured
      (`PgliteEx.SessionState`);
    * before a client's turn, its settings are put in place if the backend has others;
    * a client that went away has its COPY, extended sequence and transaction ended, its
      statements closed and its session objects dropped;
    * after a `DEALLOCATE ALL` the backend ran as written (among other statements),
      every other client's protocol-level statements are parsed again, each with its
      settings in place.

  ## Nobody waits for ever

  A client that holds the backend idle (in a transaction, after Flush, in COPY) while
  others wait is disconnected after `:idle_in_transaction_timeout` ms with FATAL
  `25P03`, as is one whose own `idle_in_transaction_session_timeout` runs out. A
  waiting client's `statement_timeout` and `lock_timeout` count the time it waits in
  line, as they count lock waits on a server; not for a request pipelined behind the
  same client's own unfinished one, whose answer must not overtake that one's replies.

  ## Wedges

  If clients wait behind a holder that is owed a ReadyForQuery, the port is asked
  (every 2 s) whether the backend waits for input with every frame answered. If it
  does while the holder is still owed one, the model was wrong: that is logged
  (`wedge:` with the turn's last messages) and the holder is disconnected with
  `XX000`, so nobody waits for ever.

  ## Notifications

  The backend LISTENs on the union of its clients' channels; a NotificationResponse goes
  to every client listening on its channel, whoever holds the backend, and carries the
  notifying client's id as its pid. A listener in another client encoding than the
  notifier's gets it converted into its own by the backend first, between turns
  (`PgliteEx.Notifications`).

  ## Crashes

  If the port dies, every client is closed with FATAL `57P01` and the port is started
  again after a back-off (50 ms, doubling up to 5 s, reset after 30 s of good service).
  Only a start-up that cannot succeed (an exit that is not a kill by a signal) stops
  this process, with that reason; not a full disk: while its start fails for lack of
  space it is retried (back-off up to 5 s) and new clients are refused with FATAL
  `53100`, until space is freed.

  ## This process and its core

  Everything above is decided by `PgliteEx.Arbiter`, a pure state machine: this
  process turns calls, port output, timers and monitors into its events and performs
  the actions it returns (port writes, replies, messages to clients, timers, monitors,
  log lines, starting and stopping the port).
  """
  use GenServer
  require Logger

  alias PgliteEx.{Arbiter, KeepAwake, PortProcess}

  @typedoc "What a client says about a payload it submits."
  @type meta :: %{
          required(:kinds) => [byte()],
          required(:open) => boolean(),
          optional(:prepared) => [{String.t(), binary()}],
          optional(:closed) => [String.t()],
          optional(:deferrable) => boolean(),
          optional(:session) => boolean(),
          optional(:listen) => list(),
          optional(:customs) => [String.t()],
          optional(:idle_timeout) => String.t() | nil,
          optional(:cancellable) => boolean(),
          optional(:ends_turn) => boolean(),
          optional(:ends_transaction) => boolean(),
          optional(:reset) => {PgliteEx.SessionReset.kind(), [String.t()], {iodata(), [byte()]}, [{byte(), binary(), binary()}]}
        }

  @typedoc "How `submit/3` ends for a payload that was not run."
  @type refusal :: {:canceled, String.t(), String.t()} | {:error, {:fatal, String.t(), String.t()}}

  # The arbiter's state, and what this process needs to perform its actions: the port
  # (nil while it restarts), the KeepAwake process, the running timers and monitors.
  defstruct [:arbiter, :process, :awake, timers: %{}, monitors: %{}]

  ## API

  @doc """
  Starts the port and waits for its ready frame. Options: `:executable` (path of
  pglite-port), `:env` (list of `{name, value}`), `:timeout`, `:run_dir` (where the
  port's stderr is kept), `:idle_in_transaction_timeout` (ms, 0 = never),
  `:busy_wait_us` (see `PgliteEx.KeepAwake`; 0 = never), `:database` (the one served
  first), `:data_dir` (nil in memory), `:name`.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    GenServer.start_link(__MODULE__, opts, Keyword.take(opts, [:name]) ++ [timeout: opts[:timeout] + 5_000])
  end

  @doc """
  Registers the calling client with its cancel secret and the settings of its
  StartupMessage. Returns its id (the pid of its BackendKeyData) and the ParameterStatus
  values to report. Settings other than a plain `application_name` are put in place by
  the backend first, in turn, as a server does at start-up: the values reported are
  the backend's (`ISO, DMY` for `iso,dmy`, `UTF8` for `utf8`), and an invalid one is
  the FATAL error a server would answer. The answer is kept for the next client with
  the same settings, which then waits for nothing.

  A client of another `database` than the one served waits for the backend to serve
  it (`PgliteEx.Databases`).
  """
  @spec register(GenServer.server(), non_neg_integer(), SessionState.settings(), String.t()) ::
          {:ok, pos_integer(), [{String.t(), String.t()}]} | {:error, {:fatal, String.t(), String.t()}}
  def register(server, secret, settings, database),
    do: GenServer.call(server, {:register, secret, settings, database}, :infinity)

  @doc """
  Sends whole frontend messages to the backend once the caller holds it (waiting in
  line if needed). Returns when the payload has been written to the port, or with a
  refusal when it was not run: canceled while waiting (answer the client with that
  error and ReadyForQuery), or the client must be disconnected with that FATAL error.

  A `deferrable` payload (only Parse messages and a Sync) is not queued while another
  client holds the backend: the answer is `:deferred`, and the caller acknowledges the
  Parse itself and sends it ahead of its next payload.

  A payload that needs no backend is not run: from a client with nothing in the
  backend (idle, outside a transaction), one whose only answered message is a Sync
  returns `:idle` (the caller answers ReadyForQuery `I`, as the server would), and one
  with no answered message (Flush, COPY messages outside COPY) returns `:ok`. Clients such as pgbench prepare
  synchronously on a thread that also serves other connections, one of which may hold
  the backend in a transaction; waiting there would deadlock.
  """
  @spec submit(GenServer.server(), iodata(), meta()) :: :ok | :idle | :deferred | refusal() | {:error, term()}
  def submit(server, payload, meta), do: GenServer.call(server, {:submit, payload, meta}, :infinity)

  @doc "A CancelRequest: cancels what client `id` runs or waits for, if `secret` matches."
  @spec cancel(GenServer.server(), non_neg_integer(), non_neg_integer()) :: :ok
  def cancel(server, id, secret), do: GenServer.cast(server, {:cancel, id, secret})

  @doc """
  Runs `sql` as one simple query in its own turn, with default settings, in the
  database served now. A transaction it leaves open is rolled back. Returns the
  backend's messages up to ReadyForQuery.
  """
  @spec simple_query(GenServer.server(), String.t(), timeout()) :: {:ok, [{byte(), binary()}]} | {:error, term()}
  def simple_query(server, sql, timeout), do: GenServer.call(server, {:query, sql}, timeout)

  @doc "The OS pid of the port process (nil while it restarts)."
  @spec os_pid(GenServer.server()) :: non_neg_integer() | nil
  def os_pid(server), do: GenServer.call(server, :os_pid)


  ## Start-up

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)

    case PortProcess.open(opts) do
      {:ok, process} ->
        awake = KeepAwake.start(Keyword.get(opts, :busy_wait_us, 0))
        {:ok, %__MODULE__{arbiter: Arbiter.new(opts, process.parameters, now()), process: process, awake: awake}}

      {:error, reason} ->
        {:stop, reason}
    end
  end

  ## Events in

  @impl true
  def handle_call(:os_pid, _from, state), do: {:reply, state.process && state.process.os_pid, state}
  def handle_call({:register, secret, settings, database}, from, state), do: run(state, {:register, from, secret, settings, database})
  def handle_call({:submit, payload, meta}, from, state), do: run(state, {:submit, from, payload, meta})
  def handle_call({:query, sql}, from, state), do: run(state, {:query, from, sql})

  @impl true
  def handle_cast({:cancel, id, secret}, state), do: run(state, {:cancel, id, secret})

  @impl true
  def handle_info({port, {:data, data}}, %{process: %{port: port}} = state), do: run(state, {:port_data, data})
  def handle_info({port, {:exit_status, status}}, %{process: %{port: port}} = state), do: port_died(state, status)

  # A port that dies while we write to it (EPIPE, seen in the crash test) or in the
  # middle of a frame is closed without an exit status: that is a death too.
  def handle_info({:EXIT, port, reason}, %{process: %{port: port}} = state), do: port_died(state, inspect(reason))
  def handle_info({:EXIT, port, _reason}, state) when is_port(port), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}

  def handle_info({:DOWN, ref, :process, pid, _reason}, state) do
    case Map.pop(state.monitors, pid) do
      {^ref, monitors} -> run(%{state | monitors: monitors}, {:client_down, pid})
      _ -> {:noreply, state}
    end
  end

  def handle_info({:pglite_sent, pid, bytes}, state), do: run(state, {:written, pid, bytes})

  # A timer canceled or started again after it fired is not this one.
  def handle_info({:arbiter_timer, name, ref}, state) do
    case Map.pop(state.timers, name) do
      {{^ref, _timer}, timers} -> run(%{state | timers: timers}, {:timeout, name})
      _ -> {:noreply, state}
    end
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp port_died(state, status) do
    tail = PortProcess.stderr_tail(state.process)
    PortProcess.discard(state.process)
    run(%{state | process: nil}, {:port_died, status, tail})
  end

  @impl true
  def terminate(_reason, %{process: nil}), do: :ok

  def terminate(_reason, state) do
    # Terminate makes the port checkpoint and exit 0: committed data is on disk.
    {_, state} = perform(state, :shutdown)
    PortProcess.stop(state.process)
  end

  ## Actions out

  defp run(state, event) do
    case perform(state, event) do
      {nil, state} -> {:noreply, state}
      {reason, state} -> {:stop, reason, state}
    end
  end

  # Hands one event to the arbiter and performs its actions, in order; starting the
  # port has an outcome, which is the next event. Returns a reason to stop, or nil.
  defp perform(state, event) do
    {actions, arbiter} = state.arbiter |> Arbiter.handle(event, now()) |> Arbiter.take_actions()
    Enum.reduce(actions, {nil, %{state | arbiter: arbiter}}, fn action, {stop, state} -> act(action, state, stop) end)
  end

  defp act({:stop, reason}, state, _stop), do: {reason, state}

  defp act(:start_port, state, stop) do
    case PortProcess.open(state.arbiter.opts) do
      {:ok, process} -> perform(%{state | process: process}, {:restarted, {:ok, process.parameters}}) |> keep_stop(stop)
      {:error, reason} -> perform(state, {:restarted, {:error, reason}}) |> keep_stop(stop)
    end
  end

  defp act({:switch_port, database, opts, waiters}, state, stop) do
    PortProcess.stop(state.process)

    case PortProcess.open(opts) do
      {:ok, process} -> perform(%{state | process: process}, {:switched, database, opts, waiters, {:ok, process.parameters}})
      {:error, reason} -> perform(%{state | process: nil}, {:switched, database, opts, waiters, {:error, reason}})
    end
    |> keep_stop(stop)
  end

  defp act(action, state, stop), do: {stop, act(action, state)}

  defp keep_stop({nil, state}, stop), do: {stop, state}
  defp keep_stop(result, _stop), do: result

  defp act({:reply, from, answer}, state) do
    GenServer.reply(from, answer)
    state
  end

  defp act({:send, pid, message}, state) do
    send(pid, Tuple.insert_at(message, 1, self()))
    state
  end

  defp act({:kill, pid}, state) do
    Process.exit(pid, :kill)
    state
  end

  defp act({:monitor, pid}, state), do: %{state | monitors: Map.put(state.monitors, pid, Process.monitor(pid))}

  defp act({:demonitor, pid}, state) do
    {ref, monitors} = Map.pop(state.monitors, pid)
    if ref, do: Process.demonitor(ref, [:flush])
    %{state | monitors: monitors}
  end

  defp act({:start_timer, name, ms}, state) do
    state = act({:cancel_timer, name}, state)
    ref = make_ref()
    timer = Process.send_after(self(), {:arbiter_timer, name, ref}, ms)
    %{state | timers: Map.put(state.timers, name, {ref, timer})}
  end

  defp act({:cancel_timer, name}, state) do
    case Map.pop(state.timers, name) do
      {nil, _} ->
        state

      {{_ref, timer}, timers} ->
        Process.cancel_timer(timer)
        %{state | timers: timers}
    end
  end

  defp act({:log, level, message}, state) do
    Logger.log(level, message)
    state
  end

  defp act(:poke, state) do
    KeepAwake.poke(state.awake)
    state
  end

  defp act(:rest, state) do
    KeepAwake.rest(state.awake)
    state
  end

  # What goes to the port needs one.
  defp act(_action, %{process: nil} = state), do: state
  defp act({:write, payload}, state), do: port(state, &PortProcess.command(&1, payload))
  defp act({:cancel, first, last}, state), do: port(state, &PortProcess.cancel(&1, first, last))
  defp act(:probe, state), do: port(state, &PortProcess.probe/1)
  defp act(:untimed, state), do: port(state, &PortProcess.untimed/1)
  defp act(:pause_output, state), do: port(state, &PortProcess.pause_output/1)
  defp act(:resume_output, state), do: port(state, &PortProcess.resume_output/1)

  defp port(state, fun) do
    fun.(state.process)
    state
  end

  defp now, do: System.monotonic_time(:millisecond)
end
