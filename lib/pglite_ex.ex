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

    * after a turn that may have changed the client's session, its settings, TEMP
      relations, prepared statements, cursors and channels are captured
      (`PgliteEx.SessionState`);
    * before a client's turn, its settings are put in place if the backend has others;
    * a client that went away has its COPY, extended sequence and transaction ended, its
      statements closed and its session objects dropped.

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
  notifying client's id as its pid.

  ## Crashes

  If the port dies, every client is closed with FATAL `57P01` and the port is started
  again after a back-off (50 ms, doubling up to 5 s, reset after 30 s of good service).
  Only a start-up that cannot succeed (an exit that is not a kill by a signal) stops
  this process, with that reason; not a full disk: while its start fails for lack of
  space it is retried (back-off up to 5 s) and new clients are refused with FATAL
  `53100`, until space is freed.
  """
  use GenServer
  require Logger

  alias PgliteEx.{Chores, Databases, InFlight, KeepAwake, MessageBuffer, OutputFlow, PortProcess, SessionState, Timeouts, Turns, Wire}

  @typedoc "What a client says about a payload it submits."
  @type meta :: %{
          required(:kinds) => [byte()],
          required(:open) => boolean(),
          optional(:prepared) => [String.t()],
          optional(:closed) => [String.t()],
          optional(:deferrable) => boolean(),
          optional(:session) => boolean(),
          optional(:listen) => list(),
          optional(:idle_timeout) => String.t() | nil,
          optional(:cancellable) => boolean(),
          optional(:ends_turn) => boolean(),
          optional(:ends_transaction) => boolean()
        }

  @typedoc "How `submit/3` ends for a payload that was not run."
  @type refusal :: {:canceled, String.t(), String.t()} | {:error, {:fatal, String.t(), String.t()}}

  @backoff_ms [50, 100, 200, 500, 1_000, 2_000, 5_000]
  @stable_ms 30_000
  # How long clients wait behind a holder that owes replies before the port is asked
  # whether it is idle (PgliteEx.InFlight, see "A turn's end").
  @wedge_check_ms 2_000
  # The last messages of a turn, kept to explain a wedge.
  @history 64
  @idle_reply <<0, "pglite:idle">>
  @checked_max 100

  defstruct [
    :process,
    :opts,
    :up_since,
    # PgliteEx.KeepAwake (nil when off), the client that wrote the last request, and
    # whether a poke waits for its rest.
    :awake,
    :last_writer,
    poked: false,
    # The backend's ParameterStatus values at start-up, for new clients.
    parameters: [],
    # Start-up settings the backend accepted, with the values it reported for them: a
    # pool's next connections with the same settings need no turn.
    checked: %{},
    # The port's bytes not yet a whole message (PgliteEx.MessageBuffer).
    incoming: MessageBuffer.new(),
    status: ?I,
    # What the backend owes the holder (PgliteEx.InFlight).
    in_flight: InFlight.new(),
    open: false,
    in_copy: false,
    # nil | :down | {:client, pid} | {:chore, chore, replies}
    holder: nil,
    queue: :queue.new(),
    chores: [],
    clients: %{},
    next_id: 1,
    # The settings the backend's session has now (:unknown after a failed restore).
    applied: %{},
    idle_timer: nil,
    restarts: 0,
    # The number of the last frame written to the port (PortProcess.next_frame/1), and
    # of the first frame of the holder's turn: cancels are aimed at frames.
    written: 0,
    turn_first: 1,
    # Everything the holder has in flight ends its turn (PgliteEx.Server.TurnEnd).
    closing: false,
    # The next client's request, written to the port behind the holder's last one:
    # nil | %{pid: pid, meta: meta, frame: n, gone: nil | client}
    ahead: nil,
    # The wedge check's timer, its probe (nil | {number, {holder, turn_first, mark} |
    # {:chore, chore, written}}), and
    # the turn's last messages, newest first.
    wedge_timer: nil,
    probe: nil,
    history: [],
    history_len: 0,
    # Idle probes written to the port and answered (the answers come in order), and the
    # number of the probe a barrier waits for.
    probes_sent: 0,
    probes_answered: 0,
    barrier_probe: nil,
    # A ROLLBACK was tried since the last client's turn (see next/1).
    rollback_tried: false,
    # The port holds its output for a holder that stopped reading (PgliteEx.OutputFlow).
    paused: false,
    # The database served, and clients waiting for another (PgliteEx.Databases).
    databases: nil,
    # Why the port cannot start again now (its disk is full), while it is retried.
    cannot_start: nil
  ]

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
        databases = Databases.new(Keyword.get(opts, :database, "postgres"))
        {:ok, %__MODULE__{process: process, parameters: process.parameters, opts: opts, up_since: now(), awake: awake, databases: databases}}
      {:error, reason} -> {:stop, reason}
    end
  end

  ## Calls

  @impl true
  def handle_call({:register, _secret, _settings, _database}, _from, %{holder: :down, cannot_start: why} = state)
      when is_binary(why),
      do: {:reply, {:error, {:fatal, "53100", "the database system cannot start: #{why} (retried every few seconds)"}}, state}

  def handle_call({:register, secret, settings, database}, from, %{databases: %{serving: serving}} = state)
      when database != serving do
    if keeps_files?(state.opts) do
      # Looked up first, as a server answers a missing database at once.
      timer = Process.send_after(self(), {:switch_timeout, from}, Databases.wait_ms())
      waiter = %{from: from, secret: secret, settings: settings, database: database, timer: timer}
      {:noreply, %{state | chores: state.chores ++ [{:look_up, waiter}]} |> next() |> arm_timers()}
    else
      # Starting the port again would start from the template: nothing kept.
      message = ~s(database "#{database}" is not served here: this pglite instance keeps its data in the port's memory and serves only database "#{serving}")
      {:reply, {:error, {:fatal, "3D000", message}}, state}
    end
  end

  def handle_call({:register, secret, settings, _database}, from, state) do
    case admit(state, from, secret, settings) do
      {nil, state} -> {:noreply, state}
      {reply, state} -> {:reply, reply, state}
    end
  end

  def handle_call(:os_pid, _from, state), do: {:reply, state.process && state.process.os_pid, state}

  def handle_call({:submit, payload, meta}, {pid, _} = from, state) do
    state = note_submit(state, pid, meta)

    cond do
      state.holder == {:client, pid} and state.ahead == nil ->
        # Activity: the holder's idle time starts again.
        {:reply, :ok, state |> stop_idle_timer() |> write(payload, meta) |> maybe_ahead() |> arm_timers()}

      # Nothing in the backend is this client's: it is idle, outside a transaction. A
      # server ignores Flush and stray COPY messages there and answers a Sync (a
      # DBConnection ping) with ReadyForQuery 'I' alone: so does the front end, at once.
      meta.kinds in [[], ~c"S"] and not in_port?(state, pid) ->
        {:reply, if(meta.kinds == [], do: :ok, else: :idle), state}

      # The backend is free, nobody waits and nothing is to be done first: its turn now.
      free?(state) and settings_in_place?(state, pid) ->
        {:reply, :ok, state |> take_turn(pid, payload, meta) |> arm_timers()}

      # Not while it has requests in the port: the acknowledgement would reach the
      # client before their replies.
      Map.get(meta, :deferrable, false) and not (state.holder == nil and :queue.is_empty(state.queue)) and
          not in_port?(state, pid) ->
        {:reply, :deferred, state}

      true ->
        item = {:submit, from, payload, meta, wait_timer(state, pid, from)}
        {:noreply, state |> enqueue(item) |> next() |> arm_timers()}
    end
  end

  def handle_call({:query, sql}, from, state) do
    {:noreply, state |> enqueue({:query, from, sql}) |> next() |> arm_timers()}
  end

  @impl true
  def handle_cast({:cancel, id, secret}, state) do
    case Enum.find(state.clients, fn {_pid, c} -> c.id == id and c.secret == secret end) do
      {pid, _} -> {:noreply, cancel_client(state, pid, "57014", "canceling statement due to user request")}
      nil -> {:noreply, state}
    end
  end

  ## Port output

  @impl true
  def handle_info({port, {:data, @idle_reply}}, %{process: %{port: port}} = state),
    do: {:noreply, state |> idle_answered() |> arm_timers()}

  def handle_info({port, {:data, frame}}, %{process: %{port: port}} = state) do
    state = end_busy_wait(state)

    case MessageBuffer.add(state.incoming, frame) do
      {:wait, incoming} ->
        {:noreply, %{state | incoming: incoming}}

      {:ready, bytes, _} ->
        {:ok, messages, rest} = Wire.split(bytes)
        {notifications, messages} = Enum.split_with(messages, &match?({?A, _, _}, &1))
        notify(state, notifications)
        state = route(messages, %{state | incoming: MessageBuffer.keep(rest, 1)}, [])
        {:noreply, state |> maybe_release() |> arm_timers()}
    end
  end

  def handle_info({port, {:exit_status, status}}, %{process: %{port: port}} = state), do: port_died(state, status)

  # A port that dies while we write to it (EPIPE, seen in the crash test) or in the
  # middle of a frame is closed without an exit status: that is a death too.
  def handle_info({:EXIT, port, reason}, %{process: %{port: port}} = state), do: port_died(state, inspect(reason))

  def handle_info(:restart, %{holder: :down} = state) do
    case PortProcess.open(state.opts) do
      {:ok, process} ->
        Logger.info("pglite-port is back (restart #{state.restarts})")
        state = %{state | process: process, parameters: process.parameters, holder: nil, up_since: now(), cannot_start: nil}
        {:noreply, state |> next() |> arm_timers()}

      # Not the user's supervision tree's to end: it starts once space is freed.
      {:error, {:bad_data_dir, "its disk is full" <> _ = why}} ->
        delay = backoff(state.restarts)
        if state.cannot_start == nil, do: Logger.error("pglite-port cannot start: #{why}; retrying until it can")
        Process.send_after(self(), :restart, delay)
        state = fail_everyone(state, "the database system cannot start: #{why}")
        {:noreply, %{state | restarts: state.restarts + 1, cannot_start: why}}

      {:error, {:port_exited, status, _}} when not is_integer(status) or status >= 128 ->
        delay = backoff(state.restarts)
        Logger.error("pglite-port was killed while starting (#{inspect(status)}); trying again in #{delay} ms")
        Process.send_after(self(), :restart, delay)
        {:noreply, %{state | restarts: state.restarts + 1}}

      {:error, reason} ->
        Logger.error("pglite-port cannot start again: #{inspect(reason)}")
        {:stop, reason, state}
    end
  end

  def handle_info({:DOWN, ref, :process, pid, _reason}, state) do
    case Map.pop(state.clients, pid) do
      {%{ref: ^ref} = client, clients} -> {:noreply, %{state | clients: clients} |> client_gone(pid, client) |> arm_timers()}
      _ -> {:noreply, state}
    end
  end

  def handle_info({:idle_timeout, ref}, %{idle_timer: {ref, pid, _, _}} = state) do
    {code, message} =
      cond do
        state.paused -> {"08006", "terminating connection because the client stopped reading its results while other clients wait"}
        state.in_copy -> {"25P03", "terminating connection due to idle timeout in COPY while other clients wait"}
        state.status in [?T, ?E] -> {"25P03", "terminating connection due to idle-in-transaction timeout"}
        true -> {"25P03", "terminating connection due to idle timeout in an unfinished extended-protocol sequence"}
      end

    Logger.warning("client #{state.clients[pid].id} held the backend idle too long: #{message}")
    paused? = state.paused
    state = %{state | idle_timer: nil} |> kick(pid, code, message) |> arm_timers()
    # Its connection may be blocked writing to a socket nobody reads, and could not
    # act on the kick: it is ended here.
    if paused?, do: Process.exit(pid, :kill)
    {:noreply, state}
  end

  def handle_info({:idle_timeout, _stale}, state), do: {:noreply, state}

  def handle_info({:pglite_sent, pid, bytes}, state) do
    state = update_client(state, pid, &%{&1 | unwritten: max(&1.unwritten - bytes, 0)})
    {:noreply, arm_timers(state)}
  end

  # Clients have waited a while behind a holder that owes a ReadyForQuery: ask the port
  # whether the backend still works on something (it answers once it does not).
  def handle_info(:wedge_check, state) do
    state = %{state | wedge_timer: nil}

    case state.holder do
      {:client, pid} when state.probe == nil and state.process != nil ->
        {state, n} = send_probe(state)
        {:noreply, %{state | probe: {n, {pid, state.turn_first, InFlight.mark(state.in_flight)}}}}

      {:chore, chore, _} when state.probe == nil and state.process != nil ->
        {state, n} = send_probe(state)
        {:noreply, %{state | probe: {n, {:chore, chore, state.written}}}}

      _ ->
        {:noreply, arm_timers(state)}
    end
  end

  # A client whose earlier request is still in the port waits on: the answer would reach
  # it before that request's replies. Its statement_timeout applies once it runs.
  def handle_info({:wait_timeout, {pid, _} = from, code, message}, state) do
    if in_port?(state, pid),
      do: {:noreply, state},
      else: {:noreply, state |> refuse_waiting(from, {:canceled, code, message}) |> arm_timers()}
  end

  def handle_info({:switch_timeout, from}, state) do
    case Databases.take_from(state.databases, from) do
      {nil, _} ->
        {:noreply, state}

      {waiter, databases} ->
        GenServer.reply(from, {:error, Databases.busy(databases, waiter.database, map_size(state.clients))})
        {:noreply, %{state | databases: databases}}
    end
  end

  def handle_info({:EXIT, port, _reason}, state) when is_port(port), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}
  def handle_info(_other, state), do: {:noreply, state}

  # Replies go to the holder until its last ReadyForQuery; the rest belong to the
  # request written ahead, whose client holds the backend from then on.
  defp route([], state, acc), do: deliver(state, Enum.reverse(acc))

  defp route([{tag, _, _} = message | rest], state, acc) do
    state = track(message, remember(state, {:got, tag}))

    if state.ahead != nil and InFlight.empty?(state.in_flight) do
      state |> deliver(Enum.reverse([message | acc])) |> promote() |> then(&route(rest, &1, []))
    else
      route(rest, state, [message | acc])
    end
  end

  # The holder's turn ended with a request written behind it: its client holds now.
  defp promote(%{ahead: ahead, holder: {:client, before}} = state) do
    # A session change seen only in the reply (ParameterStatus from a function) came too
    # late to be captured before the next request ran: restore before the next turn.
    state = if match?(%{^before => %{dirty: true}}, state.clients), do: %{state | applied: :unknown}, else: state

    state = %{
      state
      | ahead: nil,
        holder: {:client, ahead.pid},
        turn_first: ahead.frame,
        in_flight: InFlight.sent(InFlight.new(), ahead.meta.kinds),
        history: [{:sent, ahead.pid, ahead.meta.kinds}],
        history_len: 1,
        open: ahead.meta.open,
        closing: Map.get(ahead.meta, :ends_turn, false)
    }

    case ahead.gone do
      nil -> maybe_ahead(state)
      client -> holder_gone(state, client)
    end
  end

  # Follow the backend's state: replies still owed, transaction status, COPY IN.
  defp track({tag, _, _} = message, state), do: track_state(message, %{state | in_flight: InFlight.received(state.in_flight, tag)})

  defp track_state({?Z, <<status>>, _}, state), do: %{state | status: status, in_copy: false}
  defp track_state({?G, _, _}, state), do: %{state | in_copy: true}

  defp track_state({?S, _, _}, %{holder: {:client, pid}} = state), do: update_client(state, pid, &%{&1 | dirty: true})
  defp track_state(_message, state), do: state

  defp deliver(state, []), do: state

  defp deliver(%{holder: {:client, pid}} = state, messages) do
    raw = Enum.map(messages, &elem(&1, 2))
    send(pid, {:pglite_backend, self(), raw})
    bytes = OutputFlow.bytes(raw)
    update_client(state, pid, &%{&1 | unwritten: &1.unwritten + bytes})
  end

  # What a vanished client left running answers nobody: the barrier ends when its idle
  # probe is answered (idle_answered/1). Nothing is kept.
  defp deliver(%{holder: {:chore, {:barrier, _}, _}} = state, _messages), do: state

  defp deliver(%{holder: {:chore, chore, acc}} = state, messages) do
    %{state | holder: {:chore, chore, [acc, Enum.map(messages, fn {tag, body, _} -> {tag, body} end)]}}
  end

  defp deliver(state, _messages), do: state

  # NotificationResponse: to every client listening on the channel, with the notifying
  # client's id as the pid.
  defp notify(_state, []), do: :ok

  defp notify(state, notifications) do
    notifier =
      case state.holder do
        {:client, pid} -> state.clients[pid][:id] || 0
        _ -> 0
      end

    # One send per client, in order: a transaction's notifications arrive together, in
    # one write, as from a server.
    notifications
    |> Enum.flat_map(fn {?A, <<_pid::32, rest::binary>>, _} ->
      {channel, _payload} = Wire.cstring(rest)
      message = Wire.message(?A, [<<notifier::32>>, rest])
      for {pid, client} <- state.clients, MapSet.member?(client.channels, channel), do: {pid, message}
    end)
    |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
    |> Enum.each(fn {pid, messages} -> send(pid, {:pglite_backend, self(), messages}) end)
  end

  # Hand the backend on once its holder has nothing left in flight, and is neither
  # inside a transaction, COPY or extended sequence, nor skipping to its Sync.
  defp maybe_release(%{holder: {:client, pid}} = state) do
    cond do
      not InFlight.empty?(state.in_flight) ->
        state

      state.open or InFlight.skipping?(state.in_flight) or state.status != ?I or state.in_copy ->
        state

      match?(%{^pid => %{dirty: true}}, state.clients) ->
        state = update_client(state, pid, &%{&1 | dirty: false})
        next(%{state | holder: nil, chores: [{:capture, pid} | state.chores]})

      true ->
        next(%{state | holder: nil})
    end
  end

  defp maybe_release(%{holder: {:chore, chore, acc}} = state) do
    if InFlight.empty?(state.in_flight) do
      messages = List.flatten(acc)
      chore_done(%{state | holder: nil}, chore, messages) |> next()
    else
      state
    end
  end

  defp maybe_release(state), do: state

  ## The line of waiting clients, and the chores that go before them

  defp enqueue(state, item), do: %{state | queue: :queue.in(item, state.queue)}

  # What goes next is PgliteEx.Turns' to decide; performing it is this process's.
  defp next(%{holder: nil} = state) do
    case Turns.next(state, &(state.clients[&1][:settings] || %{}), state.process != nil) do
      :wait ->
        maybe_switch(state)

      {:chore, chore, changes} ->
        run_chore(Map.merge(state, changes), chore)

      {:turn, {:submit, {pid, _} = from, payload, meta, timer}, changes} ->
        cancel_timer(timer)
        GenServer.reply(from, :ok)
        take_turn(Map.merge(state, changes), pid, payload, meta)
    end
  end

  defp next(state), do: maybe_ahead(state)

  defp take_turn(state, pid, payload, meta) do
    %{state | holder: {:client, pid}, rollback_tried: false, turn_first: PortProcess.next_frame(state.written), history: [], history_len: 0}
    |> write(payload, meta)
    |> maybe_ahead()
  end

  defp free?(state), do: state.holder == nil and state.chores == [] and :queue.is_empty(state.queue)

  # The backend's session has the client's settings: its request can go as it is.
  defp settings_in_place?(state, pid), do: match?(%{^pid => %{settings: settings}} when settings == state.applied, state.clients)

  defp write(%{holder: {:client, pid}} = state, payload, meta),
    do: state |> note_listen(pid, meta) |> remember({:sent, pid, meta.kinds}) |> write_frame(payload, meta)

  defp write(state, payload, meta), do: write_frame(state, payload, meta)

  defp write_frame(state, payload, meta) do
    # In a transaction only its end ends the turn.
    ends? = Map.get(meta, :ends_turn, false) and (state.status == ?I or Map.get(meta, :ends_transaction, false))
    closing = ends? and (InFlight.empty?(state.in_flight) or state.closing)
    in_flight = InFlight.sent(state.in_flight, meta.kinds)
    %{send_frame(state, payload) | in_flight: in_flight, open: meta.open, closing: closing} |> keep_awake()
  end

  # A client alone with the backend (its request follows its own, or it is inside its
  # transaction): every scheduler would sleep until the reply (PgliteEx.KeepAwake).
  # With the busy wait off (`awake` nil) poke and rest do nothing.
  defp keep_awake(%{holder: {:client, pid}} = state) do
    if KeepAwake.alone?(pid, state.last_writer, state.status) do
      KeepAwake.poke(state.awake)
      %{state | poked: true, last_writer: pid}
    else
      %{state | last_writer: pid}
    end
  end

  defp keep_awake(state), do: state

  defp end_busy_wait(%{poked: true} = state) do
    KeepAwake.rest(state.awake)
    %{state | poked: false}
  end

  defp end_busy_wait(state), do: state

  defp send_frame(state, payload) do
    PortProcess.command(state.process, payload)
    %{state | written: PortProcess.next_frame(state.written)}
  end

  # Writes the next waiting client's request behind the holder's, when the holder's
  # turn surely ends with the backend idle and nothing is to be done between the turns.
  # Not one whose statement_timeout or lock_timeout counts its wait (a wait timer): in
  # the port its clock would start only when its request does.
  defp maybe_ahead(%{holder: {:client, holder}, ahead: nil, chores: [], closing: true, in_copy: false} = state) do
    with false <- InFlight.empty?(state.in_flight),
         {{:value, {:submit, {pid, _} = from, payload, meta, nil}}, queue} when pid != holder <- :queue.out(state.queue),
         true <- settings_in_place?(state, pid),
         false <- match?(%{^holder => %{dirty: true}}, state.clients) do
      GenServer.reply(from, :ok)
      state = send_frame(note_listen(%{state | queue: queue}, pid, meta), payload)
      %{state | ahead: %{pid: pid, meta: meta, frame: state.written, gone: nil}}
    else
      _ -> state
    end
  end

  defp maybe_ahead(state), do: state

  # A chore with nothing to send is done at once. Chores run untimed: a
  # statement_timeout a departed client left would cancel its cleanup.
  defp run_chore(state, chore) do
    case Chores.payload(chore, state.status, &(state.clients[&1][:settings] || %{})) do
      nil -> state |> chore_done(chore, []) |> next()
      payload ->
        PortProcess.untimed(state.process)
        write_chore(state, chore, payload)
    end
  end

  defp write_chore(state, chore, {payload, :barrier}) do
    state = %{write(%{state | holder: {:chore, chore, []}}, payload, %{kinds: [], open: false}) | in_flight: InFlight.unknown()}
    {state, n} = send_probe(state)
    %{state | barrier_probe: n}
  end

  defp write_chore(state, chore, {payload, kinds}), do: write(%{state | holder: {:chore, chore, []}}, payload, %{kinds: kinds, open: false})

  defp chore_done(state, {:apply, settings, pid}, messages) do
    case Enum.find(messages, &match?({?E, _}, &1)) do
      nil ->
        %{state | applied: settings}

      {?E, body} ->
        fields = Wire.fields(body)
        state = %{state | applied: :unknown}
        if pid, do: kick(state, pid, fields[?C] || "22023", fields[?M] || "invalid setting"), else: state
    end
  end

  # set_config returns each setting's value as the backend holds it: what a server
  # reports for what a client asked at start-up.
  defp chore_done(state, {:register, from, pid}, messages) do
    settings = state.clients[pid][:settings] || %{}

    case Enum.find(messages, &match?({?E, _}, &1)) do
      nil ->
        values = for({?D, body} <- messages, do: Wire.data_row(body)) |> List.first([])
        held = Enum.zip(settings |> Enum.sort() |> Enum.map(&elem(&1, 0)), values) |> Map.new()
        reported = reported(state, held)
        GenServer.reply(from, {:ok, state.clients[pid][:id], reported})
        checked = if map_size(state.checked) < @checked_max, do: state.checked, else: %{}
        %{state | applied: settings, checked: Map.put(checked, settings, reported)}

      {?E, body} ->
        fields = Wire.fields(body)
        GenServer.reply(from, {:error, {:fatal, fields[?C] || "22023", fields[?M] || "invalid setting"}})
        %{state | applied: :unknown}
    end
  end

  defp chore_done(state, {:capture, pid}, messages) do
    found = SessionState.parse_capture(messages)
    owned = all_clients(state, :objects)
    others = all_clients(Map.update!(state, :clients, &Map.delete(&1, pid)), :channels)

    state =
      state
      |> Map.update!(:clients, fn clients ->
        Map.new(clients, fn {p, c} -> {p, %{c | objects: MapSet.intersection(c.objects, found.objects)}} end)
      end)
      |> update_client(pid, fn c ->
        new = MapSet.difference(found.objects, owned)
        %{c | settings: found.settings, objects: MapSet.union(c.objects, new), channels: channels_after_turn(c, found, others)}
      end)

    # Keep the backend listening on exactly what its clients listen on.
    wanted = all_clients(state, :channels)

    chores = [
      {:sql, SessionState.listen_sql(:listen, MapSet.difference(wanted, found.channels))},
      {:sql, SessionState.listen_sql(:unlisten, MapSet.difference(found.channels, wanted))}
    ]

    %{state | applied: found.settings, chores: chores ++ state.chores}
  end

  # A one-shot query must not leave its transaction, nor its settings, to the next client.
  defp chore_done(state, {:query, from, sql}, messages) do
    state = if SessionState.may_change_sql?(sql), do: %{state | applied: :unknown}, else: state
    %{state | chores: [:rollback, {:reply, from, messages} | state.chores]}
  end

  defp chore_done(state, {:reply, from, messages}, _) do
    GenServer.reply(from, {:ok, messages})
    state
  end

  defp chore_done(state, {:sql, sql}, messages) do
    for {?E, body} <- messages, do: Logger.warning("#{sql}: #{Wire.fields(body)[?M]}")
    state
  end

  defp chore_done(state, {:look_up, waiter}, messages) do
    # Its time may have run out while the look-up waited for its turn.
    case {Databases.verdict(messages, waiter.database), Process.read_timer(waiter.timer)} do
      {:ok, left} when is_integer(left) ->
        %{state | databases: Databases.wait(state.databases, waiter)}

      {:ok, false} ->
        GenServer.reply(waiter.from, {:error, Databases.busy(state.databases, waiter.database, map_size(state.clients))})
        state

      {refusal, _} ->
        cancel_timer(waiter.timer)
        GenServer.reply(waiter.from, {:error, refusal})
        state
    end
  end

  # A client of the served database that came while the check ran keeps it served.
  defp chore_done(%{clients: clients} = state, {:switch, _}, _messages) when map_size(clients) > 0, do: state

  defp chore_done(state, {:switch, database}, messages) do
    {waiters, databases} = Databases.take(state.databases, database)
    Enum.each(waiters, &cancel_timer(&1.timer))
    state = %{state | databases: databases}

    case Databases.verdict(messages, database) do
      :ok -> switch(state, database, waiters)
      refusal -> Enum.each(waiters, &GenServer.reply(&1.from, {:error, refusal})) && state
    end
  end

  defp chore_done(state, _chore, _messages), do: state

  ## Serving another database

  # The backend is free and no client of its database is left: serve a waiting one's.
  defp maybe_switch(state) do
    free? = state.process != nil and state.holder == nil and state.chores == [] and :queue.is_empty(state.queue)

    case Databases.due(state.databases, map_size(state.clients), free?) do
      nil -> state
      database -> run_chore(state, {:switch, database})
    end
  end

  # A clean stop (a checkpoint), then the port again on `database`, on the same files.
  defp switch(state, database, waiters) do
    PortProcess.stop(state.process)
    opts = Keyword.update(state.opts, :env, [], &(Enum.reject(&1, fn {k, _} -> k == "PGLITE_DATABASE" end) ++ [{"PGLITE_DATABASE", database}]))

    case PortProcess.open(opts) do
      {:ok, process} ->
        Logger.info("serving database #{inspect(database)} (was #{inspect(state.databases.serving)})")
        databases = %{state.databases | serving: database}
        state = %{forget_backend(state) | process: process, parameters: process.parameters, opts: opts, up_since: now(), checked: %{}, databases: databases}

        Enum.reduce(waiters, state, fn waiter, acc ->
          case admit(acc, waiter.from, waiter.secret, waiter.settings) do
            {nil, acc} -> acc
            {reply, acc} -> GenServer.reply(waiter.from, reply) && acc
          end
        end)

      # Back to the database served before, as after a crash.
      {:error, reason} ->
        Logger.error("pglite-port could not start on database #{inspect(database)}: #{inspect(reason)}")
        refusal = {:fatal, "57P03", ~s(the backend could not start on database "#{database}")}
        Enum.each(waiters, &GenServer.reply(&1.from, {:error, refusal}))
        send(self(), :restart)
        %{forget_backend(state) | process: nil, holder: :down}
    end
  end

  # Starting the port again keeps the data only when its files outlive it: a data
  # directory, or an in-memory instance's memory directory.
  defp keeps_files?(opts) do
    memory_dir = opts |> Keyword.get(:env, []) |> Enum.filter(&match?({"PGLITE_MEMORY_DIR", _}, &1)) |> List.last()
    opts[:data_dir] != nil or match?({_, dir} when dir != "", memory_dir)
  end

  # The channels a client listens on after its turn. What its SQL text said (LISTEN,
  # UNLISTEN) is not what happened if the transaction rolled back; for a channel no
  # other client listens on, the backend listened on it before the turn exactly when
  # this client did, and only this client's turn changed that: what the backend
  # listens on now is the truth. For a channel another client listens on too, the
  # text is all there is to go by.
  defp channels_after_turn(client, found, others) do
    client.channels |> MapSet.intersection(others) |> MapSet.union(MapSet.difference(found.channels, others))
  end

  ## Clients

  # A new client: its record, and its registration's answer now (`{reply, state}`) or
  # after its settings were checked in turn (`{nil, state}`).
  defp admit(state, {pid, _} = from, secret, settings) do
    id = state.next_id

    client = %{
      id: id,
      ref: Process.monitor(pid),
      secret: secret,
      statements: MapSet.new(),
      settings: settings,
      dirty: false,
      objects: MapSet.new(),
      channels: MapSet.new(),
      # Bytes handed to it and not yet written to its socket (PgliteEx.OutputFlow).
      unwritten: 0
    }

    state = %{state | clients: Map.put(state.clients, pid, client), next_id: id + 1}

    cond do
      SessionState.reported_as_given?(settings) -> {{:ok, id, reported(state, settings)}, state}
      Map.has_key?(state.checked, settings) -> {{:ok, id, state.checked[settings]}, state}
      true -> {nil, state |> enqueue({:register, from, pid}) |> next() |> arm_timers()}
    end
  end

  # Most payloads prepare, close, listen and change nothing.
  defp note_submit(state, _pid, %{prepared: [], closed: [], session: false}), do: state

  defp note_submit(state, pid, meta) do
    update_client(state, pid, fn client ->
      statements =
        client.statements
        |> MapSet.union(MapSet.new(Map.get(meta, :prepared, [])))
        |> MapSet.difference(MapSet.new(Map.get(meta, :closed, [])))

      settings =
        case Map.get(meta, :idle_timeout) do
          nil -> client.settings
          value -> Map.put(client.settings, "idle_in_transaction_session_timeout", String.replace(value, " ", ""))
        end

      %{client | statements: statements, settings: settings, dirty: client.dirty or Map.get(meta, :session, false)}
    end)
  end

  # LISTEN and UNLISTEN count from when the request goes to the port, not from when it
  # was submitted: one waiting in line has not listened yet, and another client's
  # capture must not take it for a channel someone listens on.
  defp note_listen(state, pid, %{listen: [_ | _] = ops}),
    do: update_client(state, pid, &%{&1 | channels: SessionState.apply_listen_ops(&1.channels, ops)})

  defp note_listen(state, _pid, _meta), do: state

  defp update_client(state, pid, fun) do
    case state.clients do
      %{^pid => client} -> %{state | clients: Map.put(state.clients, pid, fun.(client))}
      _ -> state
    end
  end

  # ParameterStatus values for a new client: the backend's, with the settings it asked for.
  defp reported(state, settings) do
    lowered = Map.new(settings, fn {k, v} -> {String.downcase(k), v} end)
    Enum.map(state.parameters, fn {k, v} -> {k, Map.get(lowered, String.downcase(k), v)} end)
  end

  defp cancel_client(state, pid, code, message) do
    cond do
      state.holder == {:client, pid} and not InFlight.empty?(state.in_flight) ->
        PortProcess.cancel(state.process, state.turn_first, holder_last_frame(state))
        state

      match?(%{pid: ^pid}, state.ahead) ->
        PortProcess.cancel(state.process, state.ahead.frame, state.ahead.frame)
        state

      true ->
        case Enum.find(:queue.to_list(state.queue), &match?({:submit, {^pid, _}, _, _, _}, &1)) do
          {:submit, from, _, _, _} -> refuse_waiting(state, from, {:canceled, code, message})
          nil -> state
        end
    end
  end

  # Takes a waiting payload out of the line and answers it with `refusal`; only a
  # payload that makes exactly one reply can be answered for the backend.
  defp refuse_waiting(state, from, refusal) do
    {mine, rest} = state.queue |> :queue.to_list() |> Enum.split_with(&match?({:submit, ^from, _, _, _}, &1))

    with [{:submit, _, _, meta, timer}] <- mine,
         true <- elem(refusal, 0) == :error or Map.get(meta, :cancellable, false) do
      cancel_timer(timer)
      GenServer.reply(from, refusal)
      %{state | queue: :queue.from_list(rest)}
    else
      _ -> state
    end
  end

  defp wait_timer(state, pid, from) do
    case Timeouts.wait(state.clients[pid][:settings] || %{}) do
      nil -> nil
      {ms, code, message} -> Process.send_after(self(), {:wait_timeout, from, code, message}, ms)
    end
  end

  defp cancel_timer(nil), do: :ok
  defp cancel_timer(ref), do: Process.cancel_timer(ref) && :ok

  # The idle timer runs while the holder keeps the backend without anything in flight
  # (or the backend waits for its COPY data).
  defp arm_timers(state), do: state |> arm_flow() |> arm_idle_timer() |> arm_wedge_check()

  # Holds the port's output while the holder has too much unwritten, and lets it flow
  # again once it reads, or as soon as someone else holds (PgliteEx.OutputFlow).
  defp arm_flow(%{process: nil} = state), do: state

  defp arm_flow(state) do
    unwritten =
      case state.holder do
        {:client, pid} -> state.clients[pid][:unwritten]
        _ -> nil
      end

    case OutputFlow.decide(state.paused, unwritten) do
      :pause ->
        Logger.debug("holding the backend's output: its client has #{unwritten} bytes unread")
        PortProcess.pause_output(state.process)
        %{state | paused: true}

      :resume ->
        PortProcess.resume_output(state.process)
        %{state | paused: false}

      :none ->
        state
    end
  end

  defp arm_idle_timer(state) do
    wanted =
      with {:client, pid} <- state.holder,
           true <- state.in_copy or state.paused or InFlight.empty?(state.in_flight),
           settings = state.clients[pid][:settings] || %{},
           # A request written ahead waits too (behind a holder whose output is held).
           waiting? = not :queue.is_empty(state.queue) or state.ahead != nil,
           ms when is_integer(ms) <- Timeouts.idle(settings, state.status, waiting?, state.opts[:idle_in_transaction_timeout] || 0) do
        {pid, ms}
      else
        _ -> nil
      end

    case {state.idle_timer, wanted} do
      {{_ref, pid, ms, _timer}, {pid, ms}} ->
        state

      {_, nil} ->
        stop_idle_timer(state)

      {_, {pid, ms}} ->
        ref = make_ref()
        timer = Process.send_after(self(), {:idle_timeout, ref}, ms)
        %{stop_idle_timer(state) | idle_timer: {ref, pid, ms, timer}}
    end
  end

  # While clients wait behind a holder that owes a ReadyForQuery (and no COPY waits for
  # its data), the port is asked now and then whether the backend is idle.
  defp arm_wedge_check(%{wedge_timer: nil, probe: nil, holder: {:client, _}, in_copy: false} = state) do
    if (:queue.is_empty(state.queue) and state.ahead == nil) or not InFlight.ready_owed?(state.in_flight) do
      state
    else
      %{state | wedge_timer: Process.send_after(self(), :wedge_check, @wedge_check_ms)}
    end
  end

  # A chore holding the backend while clients wait is checked the same way.
  defp arm_wedge_check(%{wedge_timer: nil, probe: nil, holder: {:chore, _, _}} = state) do
    if :queue.is_empty(state.queue),
      do: state,
      else: %{state | wedge_timer: Process.send_after(self(), :wedge_check, @wedge_check_ms)}
  end

  defp arm_wedge_check(state), do: state

  # The backend has answered everything written before the probe and waits for input.
  # If the turn the probe was sent in still owes a ReadyForQuery for a message written
  # before it, this module's model of the backend is wrong: say so with the turn's
  # messages, and end the turn rather than let everyone wait for ever. Its client waits
  # for replies that will not come (or came to another): it is disconnected with an
  # error that says so, and cleaned up after like any client that leaves.
  defp send_probe(state) do
    PortProcess.probe(state.process)
    n = state.probes_sent + 1
    {%{state | probes_sent: n}, n}
  end

  # The port answered a probe: everything written before it has been answered.
  defp idle_answered(state) do
    n = state.probes_answered + 1
    state = %{state | probes_answered: n}
    state = if state.barrier_probe == n, do: barrier_drained(%{state | barrier_probe: nil}), else: state

    case state.probe do
      {^n, what} -> port_idle(%{state | probe: nil}, what)
      _ -> state
    end
  end

  defp barrier_drained(%{holder: {:chore, {:barrier, _}, _}} = state), do: maybe_release(%{state | in_flight: InFlight.new()})
  defp barrier_drained(state), do: state

  defp port_idle(%{holder: {:client, pid}, turn_first: first, in_copy: false} = state, {pid, first, mark}) do
    if InFlight.answered?(state.in_flight, mark) do
      state
    else
      history = state.history |> Enum.reverse() |> Enum.map_join(" ", &describe/1)

      Logger.error(
        "wedge: the backend is idle but client #{state.clients[pid][:id]}'s turn still expects replies " <>
          "(#{inspect(state.in_flight)}); ending its turn. Its last messages, oldest first: #{history}"
      )

      message = "internal error in the pglite front end: the backend's replies to this connection were lost (logged)"
      kick(state, pid, "XX000", message)
    end
  end

  # A chore whose replies never came although the backend waits for input: what the
  # backend's session holds is unknown, so a barrier puts it right before anyone's turn.
  defp port_idle(%{holder: {:chore, chore, _}, written: written} = state, {:chore, chore, written}) do
    Logger.error("wedge: the backend is idle but a #{chore_kind(chore)} chore still expects replies (#{inspect(state.in_flight)}); starting over with a barrier")
    abandon_chore(chore)
    token = "pglite-barrier-#{System.unique_integer([:positive])}"
    next(%{state | holder: nil, in_flight: InFlight.new(), applied: :unknown, chores: [{:barrier, token} | state.chores]})
  end

  defp port_idle(state, _what), do: state

  defp chore_kind(chore) when is_tuple(chore), do: elem(chore, 0)
  defp chore_kind(chore), do: chore

  # Whoever waits for an abandoned chore gets an error instead of nothing.
  defp abandon_chore({:register, from, _pid}),
    do: GenServer.reply(from, {:error, {:fatal, "XX000", "internal error in the pglite front end: the backend did not answer (logged)"}})

  defp abandon_chore({:query, from, _sql}), do: GenServer.reply(from, {:error, :backend_did_not_answer})

  defp abandon_chore({:look_up, waiter}),
    do: GenServer.reply(waiter.from, {:error, {:fatal, "XX000", "internal error in the pglite front end: the backend did not answer (logged)"}})
  defp abandon_chore(_chore), do: :ok

  defp describe({:sent, _pid, kinds}), do: "sent:" <> List.to_string(kinds)
  defp describe({:got, tag}), do: <<tag>>

  # A turn's last @history messages, for port_idle's report.
  defp remember(%{history_len: n} = state, entry) when n >= 2 * @history,
    do: %{state | history: [entry | Enum.take(state.history, @history)], history_len: @history + 1}

  defp remember(state, entry), do: %{state | history: [entry | state.history], history_len: state.history_len + 1}

  defp stop_idle_timer(%{idle_timer: nil} = state), do: state

  defp stop_idle_timer(%{idle_timer: {_ref, _pid, _ms, timer}} = state) do
    Process.cancel_timer(timer)
    %{state | idle_timer: nil}
  end

  # Disconnects a client with a FATAL error and cleans up after it at once.
  defp kick(state, pid, code, message) do
    case Map.pop(state.clients, pid) do
      {nil, _} ->
        state

      {client, clients} ->
        Process.demonitor(client.ref, [:flush])
        send(pid, {:pglite_kick, self(), code, message})
        state = %{state | clients: clients}

        state =
          Enum.reduce(:queue.to_list(state.queue), state, fn
            {:submit, {^pid, _} = from, _, _, _}, acc -> refuse_waiting(acc, from, {:error, {:fatal, code, message}})
            _, acc -> acc
          end)

        client_gone(state, pid, client)
    end
  end

  ## A client that went away

  defp client_gone(state, pid, client) do
    queue = :queue.filter(fn item -> not match?({:submit, {^pid, _}, _, _, _}, item) end, state.queue)
    state = %{state | queue: queue}

    cond do
      # Its request is in the port already: cleaned up when its turn comes.
      match?(%{pid: ^pid}, state.ahead) ->
        %{state | ahead: %{state.ahead | gone: client}}

      # Its turn ends by itself, and the request behind it is not its own: stop what
      # runs, let its last replies go nowhere, clean up after the next turn.
      state.holder == {:client, pid} and state.ahead != nil ->
        if not InFlight.empty?(state.in_flight), do: PortProcess.cancel(state.process, state.turn_first, holder_last_frame(state))
        %{state | chores: state.chores ++ cleanup_chores(state, client)}

      state.holder == {:client, pid} ->
        holder_gone(state, client)

      true ->
        next(%{state | chores: state.chores ++ cleanup_chores(state, client)})
    end
  end

  # The holder went away in the middle of anything (a COPY, a transaction, a sequence).
  defp holder_gone(state, client) do
    # Nobody will read the answer of a statement still running: stop it.
    if not InFlight.empty?(state.in_flight) and not state.in_copy,
      do: PortProcess.cancel(state.process, state.turn_first, holder_last_frame(state))

    token = "pglite-barrier-#{System.unique_integer([:positive])}"
    chores = [{:barrier, token} | cleanup_chores(state, client)]
    # Replies still owed to the vanished client arrive before the barrier's and are dropped.
    next(%{state | holder: nil, chores: chores ++ state.chores, in_flight: InFlight.new(), open: false, closing: false})
  end

  defp cleanup_chores(state, client) do
    drops = for sql <- SessionState.drop_statements(client.objects), do: {:sql, sql}
    [{:close, client.statements} | drops] ++ unlisten_leftovers(state, client)
  end

  # Whether requests of client `pid` are in the port, their replies still to come.
  defp in_port?(%{holder: {:client, pid}} = state, pid), do: not InFlight.empty?(state.in_flight) or match?(%{pid: ^pid}, state.ahead)
  defp in_port?(%{ahead: %{pid: pid}}, pid), do: true
  defp in_port?(_state, _pid), do: false

  # The holder's frames end where the request written ahead of its turn's end begins.
  defp holder_last_frame(%{ahead: %{frame: frame}}), do: PortProcess.previous_frame(frame)
  defp holder_last_frame(state), do: state.written

  # A departing client's channels that nobody else wants are unlistened.
  defp unlisten_leftovers(state, client) do
    [{:sql, SessionState.listen_sql(:unlisten, MapSet.difference(client.channels, all_clients(state, :channels)))}]
  end

  # The union of one MapSet field (:objects, :channels) over every client.
  defp all_clients(state, field) do
    Enum.reduce(state.clients, MapSet.new(), fn {_, c}, acc -> MapSet.union(acc, Map.fetch!(c, field)) end)
  end

  ## The port died

  defp port_died(state, status) do
    tail = PortProcess.stderr_tail(state.process)
    PortProcess.discard(state.process)
    restarts = if now() - state.up_since > @stable_ms, do: 0, else: state.restarts
    delay = backoff(restarts)
    last_words = if tail == "", do: "", else: " Its last words:\n" <> tail
    Logger.error("pglite-port exited with status #{status}; restarting it in #{delay} ms.#{last_words}")
    reason = "the PostgreSQL backend exited (status #{status}) and is restarting"
    state = fail_everyone(state, reason)
    Process.send_after(self(), :restart, delay)
    {:noreply, %{state | process: nil, holder: :down, restarts: restarts + 1, paused: false}}
  end

  ## Failure and shutdown

  defp fail_everyone(state, reason) do
    for item <- :queue.to_list(state.queue) do
      case item do
        {:submit, from, _, _, timer} ->
          cancel_timer(timer)
          GenServer.reply(from, {:error, {:fatal, "57P01", "terminating connection because #{reason}"}})

        {:query, from, _} ->
          GenServer.reply(from, {:error, {:backend_down, reason}})

        {:register, from, _} ->
          GenServer.reply(from, {:error, {:fatal, "57P01", "terminating connection because #{reason}"}})
      end
    end

    case state.holder do
      {:chore, {:query, from, _}, _} -> GenServer.reply(from, {:error, {:backend_down, reason}})
      _ -> :ok
    end

    for {:reply, from, _} <- state.chores, do: GenServer.reply(from, {:error, {:backend_down, reason}})

    for {pid, client} <- state.clients do
      Process.demonitor(client.ref, [:flush])
      send(pid, {:pglite_down, self(), reason})
    end

    {waiters, databases} = Databases.take_all(state.databases)
    looking_up = for {:look_up, waiter} <- [holder_chore(state.holder) | state.chores], do: waiter

    for waiter <- waiters ++ looking_up do
      cancel_timer(waiter.timer)
      GenServer.reply(waiter.from, {:error, {:fatal, "57P01", "terminating connection because #{reason}"}})
    end

    forget_backend(%{stop_idle_timer(state) | queue: :queue.new(), chores: [], clients: %{}, databases: databases})
  end

  defp holder_chore({:chore, chore, _}), do: chore
  defp holder_chore(_holder), do: nil

  # What this process knows of the port's session, forgotten for a new port.
  defp forget_backend(state) do
    %{
      state
      | incoming: MessageBuffer.new(),
        status: ?I,
        in_flight: InFlight.new(),
        open: false,
        in_copy: false,
        applied: %{},
        idle_timer: nil,
        written: 0,
        closing: false,
        ahead: nil,
        probe: nil,
        probes_sent: 0,
        probes_answered: 0,
        barrier_probe: nil,
        history: [],
        history_len: 0,
        paused: false
    }
  end

  @impl true
  def terminate(_reason, %{process: nil}), do: :ok

  def terminate(_reason, state) do
    # Terminate makes the port checkpoint and exit 0: committed data is on disk.
    fail_everyone(state, "the instance is shutting down")
    PortProcess.stop(state.process)
  end

  defp now, do: System.monotonic_time(:millisecond)

  # The wait before the n-th restart in a row.
  defp backoff(n), do: Enum.at(@backoff_ms, n, List.last(@backoff_ms))
end
