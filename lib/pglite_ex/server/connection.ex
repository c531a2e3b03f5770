defmodule PgliteEx.Server.Connection do
  @moduledoc """
  One client connection: the start-up handshake (SSL/GSS refusal, StartupMessage checks,
  SCRAM-SHA-256), then whole frontend messages passed to the shared backend through
  `PgliteEx.submit/3` and the backend's replies written back.

  A client that breaks the protocol, or sends what its server would refuse
  (`PgliteEx.Server.Violations`), gets the server's error and is closed alone, as
  is one that `PgliteEx` disconnects (`{:pglite_kick, ...}`, e.g. after holding the
  backend idle too long). A CancelRequest connection passes its pid and key to
  `PgliteEx.cancel/3` and is closed, as on a server.
  """
  use GenServer, restart: :temporary
  require Logger

  alias PgliteEx.Server.{Request, Scram, Violations}
  alias PgliteEx.{MessageBuffer, OutputFlow, SessionState, Wire}

  @ssl_request 80_877_103
  @gss_request 80_877_104
  @cancel_request 80_877_102
  @protocol_v3 196_608
  @max_startup 10_000
  @max_auth_message 65_535 + 4

  defstruct [
    :socket,
    :instance,
    :backend,
    :secret,
    :scram,
    :user,
    # The database its StartupMessage names.
    :database,
    # The instance's connection facts (user, database, SCRAM secret), read once.
    :info,
    # Settings asked for in the StartupMessage.
    settings: %{},
    phase: :startup,
    # Bytes read and not yet a whole message (PgliteEx.MessageBuffer); `buffer` holds
    # them joined while they are split into messages.
    incoming: MessageBuffer.new(),
    buffer: "",
    # What it knows of its client to make its batches ready (PgliteEx.Server.Request),
    # and how many of the backend's ReadyForQuery replies to deferred Parse messages
    # are still to drop (see PgliteEx.submit/3).
    request: %PgliteEx.Server.Request{},
    skip_ready: 0,
    # In COPY FROM STDIN: only COPY messages may come (PgliteEx.Server.Violations).
    copy_in: false,
    # Bytes written to the socket and not yet reported to PgliteEx (PgliteEx.OutputFlow).
    written: 0,
    # Messages sent behind a Query that may start COPY FROM STDIN, in its write or in
    # later ones, held until the backend says whether it did
    # (PgliteEx.Server.Violations.split_at_copy/1), and what releases them: nil (nothing
    # awaited), {:ready, n} (the n-th ReadyForQuery from now) or {:copy, n} (that, or
    # the COPY started).
    held: [],
    release_on: nil
  ]

  @doc false
  def start_link({socket, {instance, authentication_timeout}}),
    do: GenServer.start_link(__MODULE__, {socket, instance, authentication_timeout})

  @doc "Hands the accepted socket to the connection process and starts reading."
  @spec hand_over(pid(), port()) :: :ok | {:error, term()}
  def hand_over(pid, socket) do
    with :ok <- :gen_tcp.controlling_process(socket, pid), do: send(pid, :socket_ready) && :ok
  end

  @impl true
  def init({socket, instance, authentication_timeout}) do
    # As a server's authentication_timeout: a client that never finishes logging in
    # holds nothing for long.
    if authentication_timeout, do: Process.send_after(self(), :authentication_timeout, authentication_timeout)
    {:ok, %__MODULE__{socket: socket, instance: instance, secret: :crypto.strong_rand_bytes(4)}}
  end

  @impl true
  def handle_info(:socket_ready, state), do: {:noreply, activate(state)}

  def handle_info(:authentication_timeout, %{phase: :ready} = state), do: {:noreply, state}

  def handle_info(:authentication_timeout, state) do
    Logger.debug("closing a client that did not log in in time")
    stop(close_fatal(state, "57014", "canceling authentication due to timeout"))
  end

  def handle_info({:tcp, _socket, data}, state) do
    with {:ready, bytes, _} <- MessageBuffer.add(state.incoming, data),
         {:ok, state} <- process(%{state | buffer: bytes}) do
      header_at = if state.phase == :startup, do: 0, else: 1
      {:noreply, %{state | buffer: "", incoming: MessageBuffer.keep(state.buffer, header_at)}}
    else
      {:wait, incoming} -> {:noreply, %{state | incoming: incoming}}
      {:close, state} -> {:stop, :normal, state}
    end
  end

  def handle_info({:tcp_passive, _socket}, state), do: {:noreply, activate(state)}

  def handle_info({:tcp_closed, _}, state), do: {:stop, :normal, state}
  def handle_info({:tcp_error, _, _}, state), do: {:stop, :normal, state}

  def handle_info({:pglite_backend, from, messages}, state) do
    bytes = OutputFlow.bytes(messages)
    {messages, state} = drop_deferred_replies(messages, state)
    state = %{state | copy_in: Violations.copy_in_after(messages, state.copy_in)}

    with :ok <- :gen_tcp.send(state.socket, messages),
         {:ok, state} <- release_held(written(state, from, bytes), messages) do
      {:noreply, state}
    else
      _ -> {:stop, :normal, state}
    end
  end

  def handle_info({:pglite_kick, _from, code, message}, state), do: stop(close_fatal(state, code, message))

  def handle_info({:pglite_down, _from, reason}, state),
    do: stop(close_fatal(state, "57P01", "terminating connection because #{reason}"))

  def handle_info({:DOWN, _ref, :process, _pid, _reason}, state), do: stop(backend_lost(state))
  def handle_info(_other, state), do: {:noreply, state}

  defp stop({:close, state}), do: {:stop, :normal, state}

  # Written to the socket: reported now and then, so the backend's output for this
  # client is held only while it does not read (PgliteEx.OutputFlow).
  defp written(state, backend, bytes) do
    total = state.written + bytes

    if total >= OutputFlow.ack_every() do
      send(backend, {:pglite_sent, self(), total})
      %{state | written: 0}
    else
      %{state | written: total}
    end
  end

  defp backend_lost(state) do
    fatal(state, "57P01", "terminating connection because the PostgreSQL backend restarted")
    {:close, state}
  end

  # Up to 100 packets before the socket asks to be re-armed: a setopts per packet
  # cost a driver call and an epoll_ctl on every round trip.
  defp activate(state) do
    :inet.setopts(state.socket, active: 100)
    state
  end

  ## Start-up phase: untagged packets

  # A server logs this and closes without a word (COMMERROR): a client that sends
  # Terminate before its start-up packet (node-postgres's connect() then end()) sees
  # a plain close, not an error.
  defp process(%{phase: :startup, buffer: <<len::32, _::binary>>} = state) when len < 8 or len > @max_startup do
    Logger.debug("closing client connection: invalid length of startup packet (#{len})")
    {:close, state}
  end

  defp process(%{phase: :startup, buffer: <<len::32, rest::binary>>} = state) when byte_size(rest) >= len - 4 do
    body_len = len - 4
    <<body::binary-size(body_len), tail::binary>> = rest
    startup(body, %{state | buffer: tail})
  end

  defp process(%{phase: :startup} = state), do: {:ok, state}

  ## Tagged phases

  # Before authentication a message is at most PG_MAX_AUTH_TOKEN_LENGTH, as on a server:
  # an unauthenticated client cannot make the front end gather a huge one.
  defp process(%{phase: phase, buffer: <<?p, len::32, _::binary>>} = state)
       when phase in [:sasl_initial, :sasl_final] and len > @max_auth_message do
    fatal(state, "08P01", "invalid message length")
    {:close, state}
  end

  defp process(state) do
    case Wire.split(state.buffer) do
      {:ok, [], _rest} ->
        {:ok, state}

      {:ok, messages, rest} ->
        handle_messages(messages, %{state | buffer: rest})

      {:error, reason} ->
        fatal(state, "08P01", reason)
        {:close, state}
    end
  end

  defp startup(<<@ssl_request::32>>, state), do: refuse_encryption(state)
  defp startup(<<@gss_request::32>>, state), do: refuse_encryption(state)
  defp startup(<<@cancel_request::32, id::32, secret::32>>, state) do
    PgliteEx.cancel(PgliteEx.Instance.backend(state.instance), id, secret)
    {:close, state}
  catch
    :exit, _ -> {:close, state}
  end

  defp startup(<<@cancel_request::32, _::binary>>, state), do: {:close, state}

  defp startup(<<@protocol_v3::32, params::binary>>, state) do
    params = params |> :binary.split(<<0>>, [:global]) |> Enum.chunk_every(2, 2, :discard) |> Map.new(&List.to_tuple/1)
    info = PgliteEx.Instance.info(state.instance)
    state = %{state | info: info}
    user = Map.get(params, "user", "")
    database = Map.get(params, "database", user)

    # One backend runs as one role: another role may well exist (CREATE ROLE works), but
    # cannot be served, so say that. Another database is served in turn (PgliteEx.Databases).
    if user != info.username do
      close_fatal(state, "28000", ~s(role "#{user}" cannot log in here: this pglite instance accepts only role "#{info.username}"))
    else
      send_bytes(state, Wire.authentication(10, "SCRAM-SHA-256" <> <<0, 0>>))
      process(%{state | phase: :sasl_initial, user: user, database: database, settings: SessionState.startup_settings(params)})
    end
  end

  defp startup(<<version::32, _::binary>>, state) do
    fatal(state, "0A000", "unsupported frontend protocol #{div(version, 65536)}.#{rem(version, 65536)}")
    {:close, state}
  end

  defp refuse_encryption(state) do
    send_bytes(state, "N")
    process(state)
  end

  ## Authentication and the ready phase

  defp handle_messages([{?p, body, _} | rest], %{phase: :sasl_initial} = state) do
    secret = state.info.scram

    with {"SCRAM-SHA-256", <<len::signed-32, data::binary>>} when len == byte_size(data) <- Wire.cstring(body),
         {:ok, server_first, exchange} <- Scram.server_first(data, secret) do
      send_bytes(state, Wire.authentication(11, server_first))
      handle_messages(rest, %{state | phase: :sasl_final, scram: exchange})
    else
      {:error, reason} -> close_fatal(state, "08P01", reason)
      _ -> close_fatal(state, "28000", "SCRAM-SHA-256 is the only authentication method offered")
    end
  end

  defp handle_messages([{?p, body, _} | rest], %{phase: :sasl_final} = state) do
    secret = state.info.scram

    case Scram.server_final(body, state.scram, secret) do
      {:ok, server_final} ->
        send_bytes(state, Wire.authentication(12, server_final))
        ready(rest, state)

      {:error, :bad_proof} ->
        close_fatal(state, "28P01", ~s(password authentication failed for user "#{state.user}"))

      {:error, reason} ->
        close_fatal(state, "08P01", reason)
    end
  end

  defp handle_messages([_ | _], %{phase: phase} = state) when phase in [:sasl_initial, :sasl_final] do
    close_fatal(state, "08P01", "expected a SASL response message")
  end

  defp handle_messages(messages, %{phase: :ready, release_on: {_, _}} = state), do: {:ok, %{state | held: state.held ++ messages}}

  # Nothing a server would refuse from this connection reaches the shared backend.
  defp handle_messages(messages, %{phase: :ready} = state) do
    {now, later, release_on} = if state.copy_in, do: {messages, [], nil}, else: Violations.split_at_copy(messages)

    case Violations.check(now, state.copy_in) do
      {:ok, copy_in} ->
        submit(now, %{state | copy_in: copy_in, held: later, release_on: release_on})

      {:close, replies} ->
        Logger.debug("closing client connection: a message its server would refuse")
        send_bytes(state, replies)
        {:close, state}
    end
  end

  defp handle_messages([], state), do: {:ok, state}

  # The backend has said whether the COPY started: the held messages go through the
  # usual checks now, inside or outside COPY.
  defp release_held(%{release_on: nil} = state, _replies), do: {:ok, state}

  defp release_held(%{release_on: {mode, n}} = state, replies) do
    left = n - Enum.count(replies, &match?(<<?Z, _::binary>>, &1))

    if left <= 0 or (mode == :copy and state.copy_in) do
      handle_messages(state.held, %{state | held: [], release_on: nil})
    else
      {:ok, %{state | release_on: {mode, left}}}
    end
  end

  defp submit(messages, state) do
    {built, request} = Request.build(state.request, messages)
    state = %{state | request: request}
    result = if built.empty, do: :ok, else: PgliteEx.submit(state.backend, built.payload, built.meta)

    case result do
      :ok when built.terminate -> {:close, state}
      :ok -> {:ok, %{state | request: Request.answered(request, built, :ok), skip_ready: state.skip_ready + built.skip}}
      :idle -> {:ok, idle_ready(state)}
      :deferred -> {:ok, defer(built, %{state | request: Request.answered(request, built, :deferred)})}
      {:canceled, code, message} -> release_held(canceled(state, built, code, message), [Wire.ready_for_query(?I)])
      {:error, {:fatal, code, message}} -> close_fatal(state, code, message)
      {:error, _} -> backend_lost(state)
    end
  catch
    :exit, _ -> backend_lost(state)
  end

  # What a server answers a Sync with when the client is idle outside a transaction.
  defp idle_ready(state) do
    send_bytes(state, Wire.ready_for_query(?I))
    state
  end

  defp canceled(state, built, code, message) do
    send_bytes(state, [Wire.error("ERROR", code, message), Wire.ready_for_query(?I)])
    %{state | request: Request.answered(state.request, built, :not_run)}
  end

  # Its Parse messages are acknowledged now and sent ahead of its next batch.
  defp defer(built, state) do
    send_bytes(state, [for(?P <- built.meta.kinds, do: Wire.message(?1, "")), Wire.ready_for_query(?I)])
    state
  end

  defp drop_deferred_replies(messages, %{skip_ready: 0} = state), do: {messages, state}

  defp drop_deferred_replies([<<?Z, _::binary>> | rest], state),
    do: drop_deferred_replies(rest, %{state | skip_ready: state.skip_ready - 1})

  defp drop_deferred_replies([<<?E, _::binary>> = error | rest], state) do
    Logger.warning("a deferred Parse failed: #{inspect(Wire.fields(binary_part(error, 5, byte_size(error) - 5)))}")
    drop_deferred_replies(rest, state)
  end

  defp drop_deferred_replies([_ | rest], state), do: drop_deferred_replies(rest, state)
  defp drop_deferred_replies([], state), do: {[], state}

  defp ready(rest, state) do
    backend = PgliteEx.Instance.backend(state.instance)
    Process.monitor(backend)

    case PgliteEx.register(backend, :binary.decode_unsigned(state.secret), state.settings, state.database) do
      {:ok, id, parameters} ->
        send_bytes(state, [
          Wire.authentication(0),
          Enum.map(parameters, fn {k, v} -> Wire.parameter_status(k, v) end),
          Wire.backend_key_data(id, :binary.decode_unsigned(state.secret)),
          Wire.ready_for_query(?I)
        ])

        handle_messages(rest, %{state | phase: :ready, backend: backend, request: %Request{id: id}})

      # A setting from the StartupMessage the backend refused: as on a server, after
      # authentication succeeded.
      {:error, {:fatal, code, message}} ->
        send_bytes(state, Wire.authentication(0))
        close_fatal(state, code, message)
    end
  end

  defp close_fatal(state, code, message) do
    fatal(state, code, message)
    {:close, state}
  end

  defp fatal(state, code, message) do
    Logger.debug("closing client connection: #{code} #{message}")
    send_bytes(state, Wire.error("FATAL", code, message))
  end

  defp send_bytes(state, data), do: :gen_tcp.send(state.socket, data)
end
