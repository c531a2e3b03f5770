defmodule PgliteEx.Server.Request do
  @moduledoc """
  What a client's batch of messages asks of the shared backend: the payload as the
  backend must get it (names made per client, `PgliteEx.Server.Statements`; Parse
  messages acknowledged earlier put first, with a Sync of their own) and the notes
  `PgliteEx.submit/3` takes about it (`t:PgliteEx.meta/0`): the replies it owes,
  whether it leaves an extended sequence open, may change the session, surely ends
  its client's turn, can be answered for the backend when canceled while waiting, or
  is a `DEALLOCATE ALL`/`DISCARD ALL`/`RESET` for the client's own session.

  Pure: it reads and updates only what the connection knows of its client (`t:t/0`),
  and what the payload's answer does to that is `answered/3`.
  """

  alias PgliteEx.{SessionReset, SessionState, Wire}
  alias PgliteEx.Server.{Statements, TurnEnd}

  defstruct [:id, open: false, sql_names: MapSet.new(), risky: MapSet.new(), deferred: []]

  @typedoc """
  What the connection knows of its client: its id, whether its last batch left an
  extended sequence open, the cursors and statements it made in SQL (their names are
  kept), its statement names whose text may open a transaction or COPY
  (`PgliteEx.Server.TurnEnd`), and Parse messages acknowledged but not yet sent
  (newest first).
  """
  @type t :: %__MODULE__{
          id: pos_integer() | nil,
          open: boolean(),
          sql_names: MapSet.t({:portal | :statement, String.t()}),
          risky: MapSet.t(String.t()),
          deferred: [binary()]
        }

  @typedoc """
  A batch made ready: the payload and its notes, the number of ReadyForQuery replies
  to drop before its own (those of the deferred Parses' Sync), whether a Terminate
  ended it, and whether nothing is left to send.
  """
  @type built :: %{
          payload: iodata(),
          meta: PgliteEx.meta(),
          skip: 0 | 1,
          terminate: boolean(),
          empty: boolean()
        }

  @doc "Makes a batch of whole messages (up to a Terminate, which ends it) ready for the backend."
  @spec build(t(), [{byte(), binary(), binary()}]) :: {built(), t()}
  def build(request, messages) do
    {messages, terminate?} =
      case Enum.split_while(messages, fn {tag, _, _} -> tag != ?X end) do
        {before, []} -> {before, false}
        {before, _terminate} -> {before, true}
      end

    session? = SessionState.may_change?(messages)
    # DECLARE and PREPARE are session changes: only then can there be new SQL names.
    request =
      if session?, do: %{request | sql_names: MapSet.union(request.sql_names, MapSet.new(SessionState.sql_names(messages)))}, else: request

    batch = Statements.rewrite(messages, request.id, request.open, request.sql_names)
    ends_turn? = not request.open and not session? and not batch.open and TurnEnd.ends_turn?(messages, request.risky)

    meta = %{
      kinds: batch.kinds,
      open: batch.open,
      prepared: batch.prepared,
      closed: batch.closed,
      deferrable: batch.deferrable,
      session: session?,
      # LISTEN and UNLISTEN change the session: no need to look for them otherwise.
      listen: if(session?, do: SessionState.listen_ops(messages), else: []),
      customs: if(session?, do: SessionState.custom_names(messages), else: []),
      idle_timeout: if(session?, do: SessionState.idle_timeout_set(messages)),
      cancellable: cancellable?(messages, batch),
      ends_turn: ends_turn?,
      ends_transaction: ends_turn? and TurnEnd.ends_transaction?(messages)
    }

    {meta, request} = session_reset(SessionReset.kind(messages), messages, meta, %{request | risky: TurnEnd.track(messages, request.risky)})
    built = %{payload: batch.payload, meta: meta, skip: 0, terminate: terminate?, empty: messages == []}
    {with_deferred(built, request), request}
  end

  @doc """
  What the answer of `PgliteEx.submit/3` to a built batch does to the client's state:
  run (`:ok`), deferred (its Parse messages go ahead of the next batch), or not run
  (answered for the backend: nothing stays open).
  """
  @spec answered(t(), built(), :ok | :deferred | :not_run) :: t()
  def answered(request, built, :ok), do: %{request | open: built.meta.open, deferred: []}
  # A deferred batch is Parse messages and a Sync: they are kept, renamed, for the next.
  def answered(request, built, :deferred), do: %{request | deferred: Enum.reverse(renamed_parses(built.payload)) ++ request.deferred}
  def answered(request, _built, :not_run), do: %{request | open: false}

  # DEALLOCATE ALL and DISCARD ALL reach this client's statements (and cursors) only,
  # its SQL-level ones among them (PgliteEx.SessionReset); they are gone after it.
  defp session_reset(nil, _messages, meta, request), do: {meta, request}

  defp session_reset(kind, messages, meta, request) when kind == :reset_all or elem(kind, 0) == :reset,
    do: {Map.put(meta, :reset, {kind, [], {[], []}, SessionReset.front(messages)}), request}

  defp session_reset(kind, messages, meta, request) do
    statements = for {:statement, name} <- request.sql_names, do: name
    gone? = fn {what, _} -> what == :statement or kind == :discard_all end
    reset = {kind, statements, {[], []}, SessionReset.front(messages)}
    {Map.put(meta, :reset, reset), %{request | sql_names: MapSet.reject(request.sql_names, gone?)}}
  end

  # A payload still waiting for its turn can be answered for the backend, as if it had
  # canceled it, when it makes exactly one reply: one Query, or extended messages up to
  # one Sync.
  defp cancellable?(messages, batch) do
    Enum.count(batch.kinds, &(&1 in ~c"QSF")) == 1 and not batch.open and
      match?({tag, _, _} when tag in [?Q, ?S], List.last(messages))
  end

  # Parse messages acknowledged earlier go first, with a Sync of their own whose
  # replies the client already had.
  defp with_deferred(built, %{deferred: []}), do: built

  defp with_deferred(built, request) do
    ahead = [Enum.reverse(request.deferred), Wire.sync()]
    ahead_kinds = Enum.map(request.deferred, fn _ -> ?P end) ++ [?S]
    # They reach the backend with this batch: the arbiter notes them then.
    deferred = for raw <- Enum.reverse(request.deferred), do: {parse_name(raw), :binary.copy(raw)}
    meta = %{built.meta | kinds: ahead_kinds ++ built.meta.kinds, deferrable: false, prepared: deferred ++ built.meta.prepared}
    # A substitute for DEALLOCATE/DISCARD/RESET ALL replaces the batch, not what goes ahead of it.
    meta = if Map.has_key?(meta, :reset), do: Map.update!(meta, :reset, &put_elem(&1, 2, {ahead, ahead_kinds})), else: meta
    %{built | payload: [ahead, built.payload], skip: 1, meta: meta}
  end

  defp parse_name(<<?P, _length::32, body::binary>>), do: body |> Wire.cstring() |> elem(0)

  defp renamed_parses(payload) do
    {:ok, messages, ""} = payload |> IO.iodata_to_binary() |> Wire.split()
    for {?P, _, raw} <- messages, do: raw
  end
end
