defmodule PgliteEx.Arbiter do
  @moduledoc """
  The arbiter of the shared backend as a pure state machine: `handle/2` takes its state
  and one event (a client's call, the port's output, a timer that ran out, a death)
  and returns the new state, whose `take_actions/1` are what must be done: writes to
  the port, replies and messages to clients, timers, monitors, log lines. `PgliteEx`,
  the process, feeds it events and performs its actions; nothing here sends, writes,
  arms a timer or reads the clock (the time of each event comes in `now`).

  What it decides is described in `PgliteEx` (turns, work between turns, timeouts,
  wedges, notifications, crashes); who goes next when the backend is free is
  `PgliteEx.Turns`, and what the backend still owes the holder is `PgliteEx.InFlight`.
  """
  alias PgliteEx.{Chores, Databases, InFlight, KeepAwake, MessageBuffer, Notifications, OutputFlow, PortProcess, SessionReset, SessionState, Timeouts, Turns, Wire}

  @typedoc "The backend's ParameterStatus values at start-up."
  @type parameters :: [{String.t(), String.t()}]

  @typedoc "A timer, named by what its end means."
  @type timer ::
          :idle | :wedge_check | :restart | {:wait, GenServer.from(), String.t(), String.t()} | {:switch, GenServer.from()}

  @typedoc "What happens to the arbiter."
  @type event ::
          {:register, GenServer.from(), non_neg_integer(), SessionState.settings(), String.t()}
          | {:submit, GenServer.from(), iodata(), PgliteEx.meta()}
          | {:query, GenServer.from(), String.t()}
          | {:cancel, non_neg_integer(), non_neg_integer()}
          | {:port_data, binary()}
          | {:port_died, term(), String.t()}
          | {:restarted, {:ok, parameters()} | {:error, term()}}
          | {:switched, String.t(), keyword(), [Databases.waiter()], {:ok, parameters()} | {:error, term()}}
          | {:client_down, pid()}
          | {:written, pid(), non_neg_integer()}
          | {:timeout, timer()}
          | :shutdown

  @typedoc "What the arbiter asks its process to do, in order."
  @type action ::
          {:reply, GenServer.from(), term()}
          | {:send, pid(), term()}
          | {:kill, pid()}
          | {:monitor, pid()}
          | {:demonitor, pid()}
          | {:write, iodata()}
          | {:cancel, pos_integer(), pos_integer()}
          | :probe
          | :untimed
          | :pause_output
          | :resume_output
          | :start_port
          | {:switch_port, String.t(), keyword(), [Databases.waiter()]}
          | {:start_timer, timer(), non_neg_integer()}
          | {:cancel_timer, timer()}
          | :poke
          | :rest
          | {:log, :debug | :info | :warning | :error, String.t()}
          | {:stop, term()}

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
    :opts,
    :up_since,
    # The time of the event being handled (monotonic ms).
    now: 0,
    # Actions asked for and not yet taken, newest first.
    actions: [],
    # Whether there is a port to write to.
    up: true,
    # The client that wrote the last request, and whether a poke of PgliteEx.KeepAwake
    # waits for its rest.
    last_writer: nil,
    poked: false,
    # The backend's ParameterStatus values at start-up, for new clients.
    parameters: [],
    # The client encoding the backend writes in now (its last ParameterStatus for it).
    encoding: "UTF8",
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
    # nil | {pid, ms}: the holder's idle timer runs.
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
    # Whether the wedge check's timer runs, its probe (nil | {number, {holder,
    # turn_first, mark} | {:chore, chore, written}}), and the turn's last messages,
    # newest first.
    wedge_timer: false,
    probe: nil,
    history: [],
    history_len: 0,
    # Idle probes written to the port and answered (the answers come in order), and the
    # number of the probe a barrier waits for.
    probes_sent: 0,
    probes_answered: 0,
    barrier_probe: nil,
    # Barriers started, for their tokens.
    barriers: 0,
    # The replies to DEALLOCATE ALL, DISCARD ALL or RESET ALL sent as substitutes,
    # still to come, oldest first (PgliteEx.SessionReset).
    reset: [],
    # A ROLLBACK was tried since the last client's turn (see PgliteEx.Turns).
    rollback_tried: false,
    # The port holds its output for a holder that stopped reading (PgliteEx.OutputFlow).
    paused: false,
    # The database served, and clients waiting for another (PgliteEx.Databases).
    databases: nil,
    # Why the port cannot start again now (its disk is full), while it is retried.
    cannot_start: nil
  ]

  @type t :: %__MODULE__{}

  @doc """
  The arbiter of a port that has just started with `parameters`. Options: `:database`
  (served first), `:idle_in_transaction_timeout` (ms, 0 = never), `:data_dir`, `:env`
  (whether the files outlive the port, and the environment a database switch starts
  it with).
  """
  @spec new(keyword(), parameters(), integer()) :: t()
  def new(opts, parameters, now) do
    databases = Databases.new(Keyword.get(opts, :database, "postgres"))
    %__MODULE__{opts: opts, parameters: parameters, encoding: start_encoding(parameters), now: now, up_since: now, databases: databases}
  end

  @doc "The actions asked for since the last call, oldest first, and the state without them."
  @spec take_actions(t()) :: {[action()], t()}
  def take_actions(state), do: {Enum.reverse(state.actions), %{state | actions: []}}

  @doc "Handles one event at time `now` (monotonic ms)."
  @spec handle(t(), event(), integer()) :: t()
  def handle(state, event, now), do: on(%{state | now: now}, event) |> arm_timers()

  ## Calls

  defp on(%{holder: :down, cannot_start: why} = state, {:register, from, _secret, _settings, _database}) when is_binary(why),
    do: reply(state, from, {:error, {:fatal, "53100", "the database system cannot start: #{why} (retried every few seconds)"}})

  defp on(%{databases: %{serving: serving}} = state, {:register, from, secret, settings, database}) when database != serving do
    if keeps_files?(state.opts) do
      # Looked up first, as a server answers a missing database at once.
      waiter = %{from: from, secret: secret, settings: settings, database: database, deadline: state.now + Databases.wait_ms()}
      state = emit(state, {:start_timer, {:switch, from}, Databases.wait_ms()})
      next(%{state | chores: state.chores ++ [{:look_up, waiter}]})
    else
      # Starting the port again would start from the template: nothing kept.
      message = ~s(database "#{database}" is not served here: this pglite instance keeps its data in the port's memory and serves only database "#{serving}")
      reply(state, from, {:error, {:fatal, "3D000", message}})
    end
  end

  defp on(state, {:register, from, secret, settings, _database}), do: admit(state, from, secret, settings)

  defp on(state, {:submit, {pid, _} = from, payload, meta}) do
    state = note_submit(state, pid, meta)

    cond do
      state.holder == {:client, pid} and state.ahead == nil ->
        # Activity: the holder's idle time starts again.
        state |> stop_idle_timer() |> write(payload, meta) |> maybe_ahead() |> reply(from, :ok)

      # Nothing in the backend is this client's: it is idle, outside a transaction. A
      # server ignores Flush and stray COPY messages there and answers a Sync (a
      # DBConnection ping) with ReadyForQuery 'I' alone: so does the front end, at once.
      meta.kinds in [[], ~c"S"] and not in_port?(state, pid) ->
        reply(state, from, if(meta.kinds == [], do: :ok, else: :idle))

      # The backend is free, nobody waits and nothing is to be done first: its turn now.
      free?(state) and settings_in_place?(state, pid) ->
        state |> take_turn(pid, payload, meta) |> reply(from, :ok)

      # Not while it has requests in the port: the acknowledgement would reach the
      # client before their replies.
      Map.get(meta, :deferrable, false) and not (state.holder == nil and :queue.is_empty(state.queue)) and
          not in_port?(state, pid) ->
        reply(state, from, :deferred)

      true ->
        {state, timer} = wait_timer(state, pid, from)
        state |> enqueue({:submit, from, payload, meta, timer}) |> next()
    end
  end

  defp on(state, {:query, from, sql}), do: state |> enqueue({:query, from, sql}) |> next()

  defp on(state, {:cancel, id, secret}) do
    case Enum.find(state.clients, fn {_pid, c} -> c.id == id and c.secret == secret end) do
      {pid, _} -> cancel_client(state, pid, "57014", "canceling statement due to user request")
      nil -> state
    end
  end

  ## Port output

  defp on(state, {:port_data, @idle_reply}), do: idle_answered(state)

  defp on(state, {:port_data, frame}) do
    state = end_busy_wait(state)

    case MessageBuffer.add(state.incoming, frame) do
      {:wait, incoming} ->
        %{state | incoming: incoming}

      {:ready, bytes, _} ->
        {:ok, messages, rest} = Wire.split(bytes)
        {notifications, messages, encoding} = Notifications.split(messages, state.encoding)
        state = notify(%{state | encoding: encoding}, notifications)
        messages |> route(%{state | incoming: MessageBuffer.keep(rest, 1)}, []) |> maybe_release()
    end
  end

  defp on(state, {:port_died, status, tail}) do
    restarts = if state.now - state.up_since > @stable_ms, do: 0, else: state.restarts
    delay = backoff(restarts)
    last_words = if tail == "", do: "", else: " Its last words:\n" <> tail
    state = log(state, :error, "pglite-port exited with status #{status}; restarting it in #{delay} ms.#{last_words}")
    state = fail_everyone(state, "the PostgreSQL backend exited (status #{status}) and is restarting")
    state = emit(state, {:start_timer, :restart, delay})
    %{state | up: false, holder: :down, restarts: restarts + 1, paused: false}
  end

  defp on(%{holder: :down} = state, {:timeout, :restart}), do: emit(state, :start_port)

  defp on(%{holder: :down} = state, {:restarted, {:ok, parameters}}) do
    state = log(state, :info, "pglite-port is back (restart #{state.restarts})")
    next(%{state | up: true, parameters: parameters, encoding: start_encoding(parameters), holder: nil, up_since: state.now, cannot_start: nil})
  end

  # Not the user's supervision tree's to end: it starts once space is freed.
  defp on(%{holder: :down} = state, {:restarted, {:error, {:bad_data_dir, "its disk is full" <> _ = why}}}) do
    delay = backoff(state.restarts)
    state = if state.cannot_start == nil, do: log(state, :error, "pglite-port cannot start: #{why}; retrying until it can"), else: state
    state = state |> emit({:start_timer, :restart, delay}) |> fail_everyone("the database system cannot start: #{why}")
    %{state | restarts: state.restarts + 1, cannot_start: why}
  end

  defp on(%{holder: :down} = state, {:restarted, {:error, {:port_exited, status, _}}}) when not is_integer(status) or status >= 128 do
    delay = backoff(state.restarts)
    state = log(state, :error, "pglite-port was killed while starting (#{inspect(status)}); trying again in #{delay} ms")
    %{emit(state, {:start_timer, :restart, delay}) | restarts: state.restarts + 1}
  end

  defp on(%{holder: :down} = state, {:restarted, {:error, reason}}) do
    state |> log(:error, "pglite-port cannot start again: #{inspect(reason)}") |> emit({:stop, reason})
  end

  defp on(state, {:switched, database, opts, waiters, {:ok, parameters}}) do
    state = log(state, :info, "serving database #{inspect(database)} (was #{inspect(state.databases.serving)})")
    databases = %{state.databases | serving: database}
    state = %{forget_backend(state) | up: true, holder: nil, parameters: parameters, encoding: start_encoding(parameters), opts: opts, up_since: state.now, checked: %{}, databases: databases}
    waiters |> Enum.reduce(state, &admit(&2, &1.from, &1.secret, &1.settings)) |> next()
  end

  # Back to the database served before, as after a crash.
  defp on(state, {:switched, database, _opts, waiters, {:error, reason}}) do
    state = log(state, :error, "pglite-port could not start on database #{inspect(database)}: #{inspect(reason)}")
    refusal = {:fatal, "57P03", ~s(the backend could not start on database "#{database}")}
    state = Enum.reduce(waiters, state, &reply(&2, &1.from, {:error, refusal}))
    %{emit(forget_backend(state), :start_port) | up: false, holder: :down}
  end

  defp on(state, {:client_down, pid}) do
    case Map.pop(state.clients, pid) do
      {nil, _} -> state
      {client, clients} -> client_gone(%{state | clients: clients}, pid, client)
    end
  end

  defp on(state, {:written, pid, bytes}), do: update_client(state, pid, &%{&1 | unwritten: max(&1.unwritten - bytes, 0)})

  defp on(%{idle_timer: {pid, _}} = state, {:timeout, :idle}) do
    {code, message} =
      cond do
        state.paused -> {"08006", "terminating connection because the client stopped reading its results while other clients wait"}
        state.in_copy -> {"25P03", "terminating connection due to idle timeout in COPY while other clients wait"}
        state.status in [?T, ?E] -> {"25P03", "terminating connection due to idle-in-transaction timeout"}
        true -> {"25P03", "terminating connection due to idle timeout in an unfinished extended-protocol sequence"}
      end

    state = log(state, :warning, "client #{state.clients[pid].id} held the backend idle too long: #{message}")
    paused? = state.paused
    state = kick(%{state | idle_timer: nil}, pid, code, message)
    # Its connection may be blocked writing to a socket nobody reads, and could not
    # act on the kick: it is ended here.
    if paused?, do: emit(state, {:kill, pid}), else: state
  end

  # Clients have waited a while behind a holder that owes a ReadyForQuery: ask the port
  # whether the backend still works on something (it answers once it does not).
  defp on(state, {:timeout, :wedge_check}) do
    state = %{state | wedge_timer: false}

    case state.holder do
      {:client, pid} when state.probe == nil and state.up ->
        {state, n} = send_probe(state)
        %{state | probe: {n, {pid, state.turn_first, InFlight.mark(state.in_flight)}}}

      {:chore, chore, _} when state.probe == nil and state.up ->
        {state, n} = send_probe(state)
        %{state | probe: {n, {:chore, chore, state.written}}}

      _ ->
        state
    end
  end

  # A client whose earlier request is still in the port waits on: the answer would reach
  # it before that request's replies. Its statement_timeout applies once it runs.
  defp on(state, {:timeout, {:wait, {pid, _} = from, code, message}}) do
    if in_port?(state, pid), do: state, else: refuse_waiting(state, from, {:canceled, code, message})
  end

  defp on(state, {:timeout, {:switch, from}}) do
    case Databases.take_from(state.databases, from) do
      {nil, _} -> state
      {waiter, databases} -> reply(%{state | databases: databases}, from, {:error, Databases.busy(databases, waiter.database, map_size(state.clients))})
    end
  end

  defp on(state, :shutdown), do: fail_everyone(state, "the instance is shutting down")

  # A timer that ran out after what it was for had ended.
  defp on(state, {:timeout, _}), do: state
  defp on(state, {:restarted, _}), do: state

  ## Replies

  # Replies go to the holder until its last ReadyForQuery; the rest belong to the
  # request written ahead, whose client holds the backend from then on.
  defp route([], state, acc), do: deliver(state, Enum.reverse(acc))

  defp route([{tag, _, _} = message | rest], state, acc) do
    {shown, state} = resetting(state, message)
    state = track(message, remember(deallocated(state, message), {:got, tag}))
    acc = Enum.reverse(shown, acc)

    if state.ahead != nil and InFlight.empty?(state.in_flight) do
      state |> deliver(Enum.reverse(acc)) |> promote() |> then(&route(rest, &1, []))
    else
      route(rest, state, acc)
    end
  end

  # The replies to a substitute for DEALLOCATE ALL, DISCARD ALL or RESET ALL: those that
  # come once every ReadyForQuery before its own has come. One the backend skipped (an
  # earlier error of the turn) has none.
  defp resetting(%{reset: [%{ready: ready} | more], in_flight: %{ready_done: done}} = state, message) when done >= ready,
    do: resetting(%{state | reset: more}, message)

  defp resetting(%{reset: [%{pid: pid, ready: ready} = pending | more], holder: {:client, pid}, in_flight: %{ready_done: done}} = state, message)
       when done + 1 == ready do
    {shown, pending} = SessionReset.reply(message, pending)
    {shown, %{state | reset: if(pending, do: [pending | more], else: more)}}
  end

  defp resetting(state, message), do: {[message], state}

  # A DEALLOCATE ALL the backend ran as written (among other statements of a Query, or
  # in a pipeline; sent alone it is PgliteEx.SessionReset's) closed every client's
  # statements. The holder's are gone, as on a server; the others' are parsed again,
  # each with its client's settings in place, before anyone else goes on; once per
  # client however many DEALLOCATE ALL the turn sends.
  defp deallocated(%{holder: {:client, pid}} = state, {?C, "DEALLOCATE ALL" <> <<0>>, _}) do
    pending = for {:reparse, other, _} <- state.chores, into: MapSet.new(), do: other

    chores =
      for {other, client} <- Enum.sort_by(state.clients, fn {_, c} -> c.id end),
          other != pid and map_size(client.statements) > 0 and not MapSet.member?(pending, other),
          chore <- [{:apply, client.settings, other}, {:reparse, other, Map.values(client.statements)}],
          do: chore

    state = update_client(state, pid, &%{&1 | statements: %{}})
    %{state | chores: state.chores ++ chores}
  end

  defp deallocated(state, _message), do: state

  # The holder's turn ended with a request written behind it: its client holds now.
  defp promote(%{ahead: ahead, holder: {:client, before}} = state) do
    # A session change seen only in the reply (ParameterStatus from a function) came too
    # late to be captured before the next request ran: restore before the next turn.
    state = if match?(%{^before => %{dirty: true}}, state.clients), do: %{state | applied: :unknown}, else: state

    state = %{
      state
      | ahead: nil,
        reset: [],
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
    bytes = OutputFlow.bytes(raw)
    state |> emit({:send, pid, {:pglite_backend, raw}}) |> update_client(pid, &%{&1 | unwritten: &1.unwritten + bytes})
  end

  # What a vanished client left running answers nobody: the barrier ends when its idle
  # probe is answered (idle_answered/1). Nothing is kept.
  defp deliver(%{holder: {:chore, {:barrier, _}, _}} = state, _messages), do: state

  defp deliver(%{holder: {:chore, chore, acc}} = state, messages) do
    %{state | holder: {:chore, chore, [acc, Enum.map(messages, fn {tag, body, _} -> {tag, body} end)]}}
  end

  defp deliver(state, _messages), do: state

  # NotificationResponse: to every client listening on the channel, with the notifying
  # client's id as the pid, in the client's encoding (PgliteEx.Notifications).
  defp notify(state, []), do: state

  defp notify(state, notifications) do
    notifier =
      case state.holder do
        {:client, pid} -> state.clients[pid][:id] || 0
        _ -> 0
      end

    # One send per client, in order: a transaction's notifications arrive together, in
    # one write, as from a server.
    notifications
    |> Enum.flat_map(fn {body, _encoding} = notification ->
      channel = Notifications.channel(body)
      for {pid, client} <- state.clients, MapSet.member?(client.channels, channel), do: {pid, notification}
    end)
    |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
    |> Enum.reduce(state, fn {pid, notifications}, acc -> notify_client(acc, pid, notifier, notifications) end)
  end

  # Those in another encoding are converted by a chore first; so are all that come
  # after them, to keep the order.
  defp notify_client(state, pid, notifier, notifications) do
    to = client_encoding(state, pid)

    if Enum.any?(notifications, fn {body, from} -> Notifications.convert?(body, from, to) end) or
         Enum.any?(state.chores, &match?({:notify, ^pid, _, _, _}, &1)) do
      # At most 8 MB of query per chore (500 payloads of at most 8000 bytes, in hex).
      chores = for chunk <- Enum.chunk_every(notifications, 500), do: {:notify, pid, notifier, to, chunk}
      %{state | chores: state.chores ++ chores}
    else
      send_notifications(state, pid, notifier, Enum.map(notifications, &elem(&1, 0)))
    end
  end

  defp send_notifications(state, pid, notifier, bodies),
    do: emit(state, {:send, pid, {:pglite_backend, Enum.map(bodies, &Wire.message(?A, [<<notifier::32>>, &1]))}})

  # A client's encoding is among its session settings when it asked for one.
  defp client_encoding(state, pid) do
    case state.clients[pid][:settings] do
      %{"client_encoding" => encoding} -> encoding
      _ -> start_encoding(state.parameters)
    end
  end

  defp start_encoding(parameters), do: List.keyfind(parameters, "client_encoding", 0, {nil, "UTF8"}) |> elem(1)

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
        next(%{state | holder: nil, chores: [{:capture, pid, Enum.sort(state.clients[pid].customs)} | state.chores]})

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

  # What goes next is PgliteEx.Turns' to decide.
  defp next(%{holder: nil} = state) do
    case Turns.next(state, &(state.clients[&1][:settings] || %{}), state.up) do
      :wait ->
        maybe_switch(state)

      {:chore, chore, changes} ->
        run_chore(Map.merge(state, changes), chore)

      {:turn, {:submit, {pid, _} = from, payload, meta, timer}, changes} ->
        state |> Map.merge(changes) |> cancel_timer(timer) |> reply(from, :ok) |> take_turn(pid, payload, meta)
    end
  end

  defp next(state), do: maybe_ahead(state)

  defp take_turn(state, pid, payload, meta) do
    %{state | holder: {:client, pid}, reset: [], rollback_tried: false, turn_first: PortProcess.next_frame(state.written), history: [], history_len: 0}
    |> write(payload, meta)
    |> maybe_ahead()
  end

  defp free?(state), do: state.holder == nil and state.chores == [] and :queue.is_empty(state.queue)

  # The backend's session has the client's settings: its request can go as it is.
  defp settings_in_place?(state, pid), do: match?(%{^pid => %{settings: settings}} when settings == state.applied, state.clients)

  # DEALLOCATE ALL, DISCARD ALL and RESET act on this client's session only (PgliteEx.SessionReset).
  # What goes ahead of it (deferred Parse messages and their Sync) goes as it is.
  defp write(%{holder: {:client, pid}} = state, payload, %{reset: {kind, sql_statements, {ahead, ahead_kinds}, front}} = meta) do
    meta = Map.delete(meta, :reset)
    # The Parses going ahead of it are the client's too by then.
    client = Map.get(note_statements(state, pid, meta).clients, pid, %{statements: %{}, objects: MapSet.new(), startup: %{}})

    case SessionReset.substitute(kind, state.status, client, sql_statements) do
      nil ->
        write(state, payload, meta)

      {substitute, kinds, closed} ->
        meta = Map.put(meta, :closed, Map.get(meta, :closed, []) ++ closed)
        listen = if kind == :discard_all, do: [:unlisten_all], else: []
        state = write(state, [ahead, substitute], %{meta | kinds: ahead_kinds ++ kinds} |> Map.put(:listen, listen))
        pending = %{pid: pid, ready: state.in_flight.ready_sent, tag: SessionReset.tag(kind), failed: false, front: front}
        %{state | reset: state.reset ++ [pending]}
    end
  end

  defp write(%{holder: {:client, pid}} = state, payload, meta),
    do: state |> note_statements(pid, meta) |> note_listen(pid, meta) |> remember({:sent, pid, meta.kinds}) |> write_frame(payload, meta)

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
  defp keep_awake(%{holder: {:client, pid}} = state) do
    if KeepAwake.alone?(pid, state.last_writer, state.status),
      do: %{emit(state, :poke) | poked: true, last_writer: pid},
      else: %{state | last_writer: pid}
  end

  defp keep_awake(state), do: state

  defp end_busy_wait(%{poked: true} = state), do: %{emit(state, :rest) | poked: false}
  defp end_busy_wait(state), do: state

  defp send_frame(state, payload), do: %{emit(state, {:write, payload}) | written: PortProcess.next_frame(state.written)}

  # Writes the next waiting client's request behind the holder's, when the holder's
  # turn surely ends with the backend idle and nothing is to be done between the turns.
  # Not one whose statement_timeout or lock_timeout counts its wait (a wait timer): in
  # the port its clock would start only when its request does.
  defp maybe_ahead(%{holder: {:client, holder}, ahead: nil, chores: [], closing: true, in_copy: false} = state) do
    with false <- InFlight.empty?(state.in_flight),
         {{:value, {:submit, {pid, _} = from, payload, meta, nil}}, queue} when pid != holder and not is_map_key(meta, :reset) <-
           :queue.out(state.queue),
         true <- settings_in_place?(state, pid),
         false <- match?(%{^holder => %{dirty: true}}, state.clients) do
      state = reply(%{state | queue: queue}, from, :ok) |> note_statements(pid, meta) |> note_listen(pid, meta) |> send_frame(payload)
      %{state | ahead: %{pid: pid, meta: meta, frame: state.written, gone: nil}}
    else
      _ -> state
    end
  end

  defp maybe_ahead(state), do: state

  ## Chores

  # A chore with nothing to send is done at once. Chores run untimed: a
  # statement_timeout a departed client left would cancel its cleanup.
  defp run_chore(state, chore) do
    case Chores.payload(chore, state.status, &(state.clients[&1][:settings] || %{})) do
      nil -> state |> chore_done(chore, []) |> next()
      payload -> state |> emit(:untimed) |> write_chore(chore, payload)
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
        checked = if map_size(state.checked) < @checked_max, do: state.checked, else: %{}
        reply(%{state | applied: settings, checked: Map.put(checked, settings, reported)}, from, {:ok, state.clients[pid][:id], reported})

      {?E, body} ->
        fields = Wire.fields(body)
        reply(%{state | applied: :unknown}, from, {:error, {:fatal, fields[?C] || "22023", fields[?M] || "invalid setting"}})
    end
  end

  defp chore_done(state, {:capture, pid, _custom_names}, messages) do
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
        settings = startup_back(found.settings, c.startup)
        %{c | settings: settings, objects: MapSet.union(c.objects, new), channels: channels_after_turn(c, found, others)}
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

  defp chore_done(state, {:reply, from, messages}, _), do: reply(state, from, {:ok, messages})

  # A notification the listener's encoding cannot hold ends its connection, as the
  # server's FATAL does.
  defp chore_done(state, {:notify, pid, notifier, _to, _notifications}, messages) do
    case Notifications.parse(messages) do
      {:ok, bodies} -> if Map.has_key?(state.clients, pid), do: send_notifications(state, pid, notifier, bodies), else: state
      {:error, code, message} -> kick(state, pid, code, message)
    end
  end

  defp chore_done(state, {:sql, sql}, messages) do
    Enum.reduce(for({?E, body} <- messages, do: Wire.fields(body)[?M]), state, &log(&2, :warning, "#{sql}: #{&1}"))
  end

  defp chore_done(state, {:look_up, waiter}, messages) do
    # Its time may have run out while the look-up waited for its turn.
    case Databases.verdict(messages, waiter.database) do
      :ok when state.now < waiter.deadline ->
        %{state | databases: Databases.wait(state.databases, waiter)}

      :ok ->
        reply(state, waiter.from, {:error, Databases.busy(state.databases, waiter.database, map_size(state.clients))})

      refusal ->
        state |> cancel_timer({:switch, waiter.from}) |> reply(waiter.from, {:error, refusal})
    end
  end

  # A client of the served database that came while the check ran keeps it served.
  defp chore_done(%{clients: clients} = state, {:switch, _}, _messages) when map_size(clients) > 0, do: state

  defp chore_done(state, {:switch, database}, messages) do
    {waiters, databases} = Databases.take(state.databases, database)
    state = Enum.reduce(waiters, %{state | databases: databases}, &cancel_timer(&2, {:switch, &1.from}))

    case Databases.verdict(messages, database) do
      # A clean stop (a checkpoint), then the port again on `database`, on the same files.
      :ok ->
        env = Enum.reject(Keyword.get(state.opts, :env, []), &match?({"PGLITE_DATABASE", _}, &1)) ++ [{"PGLITE_DATABASE", database}]
        %{emit(state, {:switch_port, database, Keyword.put(state.opts, :env, env), waiters}) | up: false, holder: :down}

      refusal ->
        Enum.reduce(waiters, state, &reply(&2, &1.from, {:error, refusal}))
    end
  end

  defp chore_done(state, _chore, _messages), do: state

  # A start-up setting the turn RESET (in a Query with other statements, so not by
  # PgliteEx.SessionReset) is back at its start-up value on a server: it is put back
  # before the client's next turn.
  defp startup_back(settings, startup) do
    present = MapSet.new(Map.keys(settings), &String.downcase/1)
    Enum.reduce(startup, settings, fn {key, value}, acc ->
      if MapSet.member?(present, String.downcase(key)), do: acc, else: Map.put(acc, key, value)
    end)
  end

  # The backend is free and no client of its database is left: serve a waiting one's.
  defp maybe_switch(state) do
    free? = state.up and free?(state)

    case Databases.due(state.databases, map_size(state.clients), free?) do
      nil -> state
      database -> run_chore(state, {:switch, database})
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

  # A new client: its record, and its registration's answer now, or after its settings
  # were checked in turn.
  defp admit(state, {pid, _} = from, secret, settings) do
    id = state.next_id

    client = %{
      id: id,
      secret: secret,
      statements: %{},
      settings: settings,
      # What its StartupMessage asked for: RESET ALL puts it back (PgliteEx.SessionReset).
      startup: settings,
      dirty: false,
      # Custom settings (`app.tenant`) it asked for at start-up or set since: the
      # capture asks for them by name.
      customs: settings |> Map.keys() |> Enum.filter(&String.contains?(&1, ".")) |> MapSet.new(),
      objects: MapSet.new(),
      channels: MapSet.new(),
      # Bytes handed to it and not yet written to its socket (PgliteEx.OutputFlow).
      unwritten: 0
    }

    state = emit(%{state | clients: Map.put(state.clients, pid, client), next_id: id + 1}, {:monitor, pid})

    cond do
      SessionState.reported_as_given?(settings) -> reply(state, from, {:ok, id, reported(state, settings)})
      Map.has_key?(state.checked, settings) -> reply(state, from, {:ok, id, state.checked[settings]})
      true -> state |> enqueue({:register, from, pid}) |> next()
    end
  end

  # Most payloads change no setting.
  defp note_submit(state, _pid, %{session: false}), do: state

  defp note_submit(state, pid, meta) do
    update_client(state, pid, fn client ->
      settings =
        case Map.get(meta, :idle_timeout) do
          nil -> client.settings
          value -> Map.put(client.settings, "idle_in_transaction_session_timeout", String.replace(value, " ", ""))
        end

      customs = MapSet.union(client.customs, MapSet.new(Map.get(meta, :customs, [])))
      %{client | settings: settings, customs: customs, dirty: client.dirty or Map.get(meta, :session, false)}
    end)
  end

  # The client's protocol statements in the backend, by backend name, with their Parse
  # messages: noted as its payload is written (one waiting in line is not there yet).
  defp note_statements(state, _pid, %{prepared: [], closed: []}), do: state

  defp note_statements(state, pid, meta) do
    update_client(state, pid, fn client ->
      statements = client.statements |> Map.merge(Map.new(Map.get(meta, :prepared, []))) |> Map.drop(Map.get(meta, :closed, []))
      %{client | statements: statements}
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
        emit(state, {:cancel, state.turn_first, holder_last_frame(state)})

      match?(%{pid: ^pid}, state.ahead) ->
        emit(state, {:cancel, state.ahead.frame, state.ahead.frame})

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
      state |> cancel_timer(timer) |> reply(from, refusal) |> Map.put(:queue, :queue.from_list(rest))
    else
      _ -> state
    end
  end

  defp wait_timer(state, pid, from) do
    case Timeouts.wait(state.clients[pid][:settings] || %{}) do
      nil -> {state, nil}
      {ms, code, message} -> {emit(state, {:start_timer, {:wait, from, code, message}, ms}), {:wait, from, code, message}}
    end
  end

  defp cancel_timer(state, nil), do: state
  defp cancel_timer(state, timer), do: emit(state, {:cancel_timer, timer})

  ## Timers and output flow, after every event

  # The idle timer runs while the holder keeps the backend without anything in flight
  # (or the backend waits for its COPY data).
  defp arm_timers(state), do: state |> arm_flow() |> arm_idle_timer() |> arm_wedge_check()

  # Holds the port's output while the holder has too much unwritten, and lets it flow
  # again once it reads, or as soon as someone else holds (PgliteEx.OutputFlow).
  defp arm_flow(%{up: false} = state), do: state

  defp arm_flow(state) do
    unwritten =
      case state.holder do
        {:client, pid} -> state.clients[pid][:unwritten]
        _ -> nil
      end

    case OutputFlow.decide(state.paused, unwritten) do
      :pause -> %{log(state, :debug, "holding the backend's output: its client has #{unwritten} bytes unread") | paused: true} |> emit(:pause_output)
      :resume -> %{emit(state, :resume_output) | paused: false}
      :none -> state
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
      {same, same} -> state
      {_, nil} -> stop_idle_timer(state)
      {_, {_pid, ms}} -> %{emit(state, {:start_timer, :idle, ms}) | idle_timer: wanted}
    end
  end

  defp stop_idle_timer(%{idle_timer: nil} = state), do: state
  defp stop_idle_timer(state), do: %{emit(state, {:cancel_timer, :idle}) | idle_timer: nil}

  # While clients wait behind a holder that owes a ReadyForQuery (and no COPY waits for
  # its data), the port is asked now and then whether the backend is idle.
  defp arm_wedge_check(%{wedge_timer: false, probe: nil, holder: {:client, _}, in_copy: false} = state) do
    if (:queue.is_empty(state.queue) and state.ahead == nil) or not InFlight.ready_owed?(state.in_flight),
      do: state,
      else: start_wedge_check(state)
  end

  # A chore holding the backend while clients wait is checked the same way.
  defp arm_wedge_check(%{wedge_timer: false, probe: nil, holder: {:chore, _, _}} = state) do
    if :queue.is_empty(state.queue), do: state, else: start_wedge_check(state)
  end

  defp arm_wedge_check(state), do: state

  defp start_wedge_check(state), do: %{emit(state, {:start_timer, :wedge_check, @wedge_check_ms}) | wedge_timer: true}

  ## Wedges

  # The backend has answered everything written before the probe and waits for input.
  # If the turn the probe was sent in still owes a ReadyForQuery for a message written
  # before it, this module's model of the backend is wrong: say so with the turn's
  # messages, and end the turn rather than let everyone wait for ever. Its client waits
  # for replies that will not come (or came to another): it is disconnected with an
  # error that says so, and cleaned up after like any client that leaves.
  defp send_probe(state) do
    n = state.probes_sent + 1
    {%{emit(state, :probe) | probes_sent: n}, n}
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

      state =
        log(
          state,
          :error,
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
    state = log(state, :error, "wedge: the backend is idle but a #{chore_kind(chore)} chore still expects replies (#{inspect(state.in_flight)}); starting over with a barrier")
    state = abandon_chore(state, chore)
    {state, barrier} = barrier(state)
    next(%{state | holder: nil, in_flight: InFlight.new(), applied: :unknown, chores: [barrier | state.chores]})
  end

  defp port_idle(state, _what), do: state

  defp chore_kind(chore) when is_tuple(chore), do: elem(chore, 0)
  defp chore_kind(chore), do: chore

  @lost {:fatal, "XX000", "internal error in the pglite front end: the backend did not answer (logged)"}

  # Whoever waits for an abandoned chore gets an error instead of nothing.
  defp abandon_chore(state, {:register, from, _pid}), do: reply(state, from, {:error, @lost})
  defp abandon_chore(state, {:query, from, _sql}), do: reply(state, from, {:error, :backend_did_not_answer})
  defp abandon_chore(state, {:look_up, waiter}), do: reply(state, waiter.from, {:error, @lost})
  defp abandon_chore(state, _chore), do: state

  defp describe({:sent, _pid, kinds}), do: "sent:" <> List.to_string(kinds)
  defp describe({:got, tag}), do: <<tag>>

  # A turn's last @history messages, for port_idle's report.
  defp remember(%{history_len: n} = state, entry) when n >= 2 * @history,
    do: %{state | history: [entry | Enum.take(state.history, @history)], history_len: @history + 1}

  defp remember(state, entry), do: %{state | history: [entry | state.history], history_len: state.history_len + 1}

  # Ends whatever a vanished client left running (PgliteEx.Chores).
  defp barrier(state), do: {%{state | barriers: state.barriers + 1}, {:barrier, "pglite-barrier-#{state.barriers + 1}"}}

  ## A client that went away, or is sent away

  # Disconnects a client with a FATAL error and cleans up after it at once.
  defp kick(state, pid, code, message) do
    case Map.pop(state.clients, pid) do
      {nil, _} ->
        state

      {client, clients} ->
        state = %{state | clients: clients} |> emit({:demonitor, pid}) |> emit({:send, pid, {:pglite_kick, code, message}})

        state =
          Enum.reduce(:queue.to_list(state.queue), state, fn
            {:submit, {^pid, _} = from, _, _, _}, acc -> refuse_waiting(acc, from, {:error, {:fatal, code, message}})
            _, acc -> acc
          end)

        client_gone(state, pid, client)
    end
  end

  defp client_gone(state, pid, client) do
    {mine, rest} = state.queue |> :queue.to_list() |> Enum.split_with(&match?({:submit, {^pid, _}, _, _, _}, &1))
    state = Enum.reduce(mine, %{state | queue: :queue.from_list(rest)}, fn {:submit, _, _, _, timer}, acc -> cancel_timer(acc, timer) end)

    cond do
      # Its request is in the port already: cleaned up when its turn comes.
      match?(%{pid: ^pid}, state.ahead) ->
        %{state | ahead: %{state.ahead | gone: client}}

      # Its turn ends by itself, and the request behind it is not its own: stop what
      # runs, let its last replies go nowhere, clean up after the next turn.
      state.holder == {:client, pid} and state.ahead != nil ->
        state = if InFlight.empty?(state.in_flight), do: state, else: emit(state, {:cancel, state.turn_first, holder_last_frame(state)})
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
    state =
      if not InFlight.empty?(state.in_flight) and not state.in_copy,
        do: emit(state, {:cancel, state.turn_first, holder_last_frame(state)}),
        else: state

    {state, barrier} = barrier(state)
    chores = [barrier | cleanup_chores(state, client)]
    # Replies still owed to the vanished client arrive before the barrier's and are dropped.
    # Whatever its turn set (a client_encoding, a search_path) was never captured: the
    # next client's settings are put back whatever they are.
    next(%{state | holder: nil, reset: [], chores: chores ++ state.chores, in_flight: InFlight.new(), open: false, closing: false, applied: :unknown})
  end

  defp cleanup_chores(state, client) do
    drops = for sql <- SessionState.drop_statements(client.objects), do: {:sql, sql}
    [{:close, Map.keys(client.statements)} | drops] ++ unlisten_leftovers(state, client)
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

  ## Failure

  defp fail_everyone(state, reason) do
    fatal = {:error, {:fatal, "57P01", "terminating connection because #{reason}"}}

    state =
      Enum.reduce(:queue.to_list(state.queue), state, fn
        {:submit, from, _, _, timer}, acc -> acc |> cancel_timer(timer) |> reply(from, fatal)
        {:query, from, _}, acc -> reply(acc, from, {:error, {:backend_down, reason}})
        {:register, from, _}, acc -> reply(acc, from, fatal)
      end)

    state =
      case state.holder do
        {:chore, {:query, from, _}, _} -> reply(state, from, {:error, {:backend_down, reason}})
        _ -> state
      end

    state = Enum.reduce(for({:reply, from, _} <- state.chores, do: from), state, &reply(&2, &1, {:error, {:backend_down, reason}}))

    state =
      Enum.reduce(state.clients, state, fn {pid, _client}, acc ->
        acc |> emit({:demonitor, pid}) |> emit({:send, pid, {:pglite_down, reason}})
      end)

    {waiters, databases} = Databases.take_all(state.databases)
    looking_up = for {:look_up, waiter} <- [holder_chore(state.holder) | state.chores], do: waiter

    state =
      Enum.reduce(waiters ++ looking_up, state, fn waiter, acc ->
        acc |> cancel_timer({:switch, waiter.from}) |> reply(waiter.from, fatal)
      end)

    forget_backend(%{stop_idle_timer(state) | queue: :queue.new(), chores: [], clients: %{}, databases: databases})
  end

  defp holder_chore({:chore, chore, _}), do: chore
  defp holder_chore(_holder), do: nil

  # What is known of the port's session, forgotten for a new port.
  defp forget_backend(state) do
    %{
      state
      | incoming: MessageBuffer.new(),
        reset: [],
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

  ## Actions

  defp emit(state, action), do: %{state | actions: [action | state.actions]}
  defp reply(state, from, answer), do: emit(state, {:reply, from, answer})
  defp log(state, level, message), do: emit(state, {:log, level, message})

  # The wait before the n-th restart in a row.
  defp backoff(n), do: Enum.at(@backoff_ms, n, List.last(@backoff_ms))
end
