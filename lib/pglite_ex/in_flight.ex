defmodule PgliteEx.InFlight do
  @moduledoc """
  What the backend still owes for the frontend messages written to it: a model of
  PostgreSQL's own message loop (`PostgresMain` in `postgres.c`), fed with the messages
  sent and the replies that come back, so that a turn ends exactly when a server would
  be ready for that client again.

  Each message waits for the reply that finishes it: Parse for ParseComplete, Bind for
  BindComplete, Close for CloseComplete, Describe for RowDescription or NoData,
  Execute for CommandComplete, EmptyQueryResponse or PortalSuspended, and a Query,
  FunctionCall or Sync for ReadyForQuery. An ErrorResponse to an extended-protocol
  message makes the backend skip every message up to the next Sync, Queries included,
  and they produce nothing: counting ReadyForQuery per Query or Sync sent instead
  waited for ever after Postgrex's savepoint mode (Parse/Bind/Execute failing, then
  `Q ROLLBACK TO SAVEPOINT`, then Sync). An error in a Query or at a Sync skips
  nothing. Flush and the COPY messages get no reply of their own.

  Pure data: no process, no port.
  """

  @enforce_keys [:queue]
  defstruct queue: :queue.new(), skipping: false, unknown: false, ready_sent: 0, ready_done: 0

  @typedoc """
  `queue`: message types sent and not yet finished; `skipping`: the backend skips to
  the next Sync; `unknown`: a barrier is draining replies owed to a client that left;
  `ready_sent`/`ready_done`: Queries, FunctionCalls and Syncs sent, and finished
  (answered or skipped).
  """
  @type t :: %__MODULE__{
          queue: :queue.queue(byte()),
          skipping: boolean(),
          unknown: boolean(),
          ready_sent: non_neg_integer(),
          ready_done: non_neg_integer()
        }

  # The messages that get replies (the rest, Flush and COPY data, get none).
  @answered ~c"QSFPBDEC"
  @extended ~c"PBDEC"
  @ready ~c"QSF"

  @doc "Nothing in flight."
  @spec new() :: t()
  def new, do: %__MODULE__{queue: :queue.new()}

  @doc """
  Replies of unknown number are coming (what a vanished client left running): owed
  until the caller knows better (`PgliteEx`: the barrier's idle probe is answered)
  and starts `new/0`.
  """
  @spec unknown() :: t()
  def unknown, do: %__MODULE__{queue: :queue.new(), unknown: true}

  @doc "The message types of `messages` that get replies, in order."
  @spec kinds([{byte(), binary(), binary()}]) :: [byte()]
  def kinds(messages), do: for({tag, _, _} <- messages, tag in @answered, do: tag)

  @doc "Messages of these types (from `kinds/1`) were written to the backend."
  @spec sent(t(), [byte()]) :: t()
  def sent(in_flight, []), do: in_flight

  def sent(%__MODULE__{queue: queue} = in_flight, kinds) do
    queue = Enum.reduce(kinds, queue, &:queue.in/2)
    skip(%{in_flight | queue: queue, ready_sent: in_flight.ready_sent + Enum.count(kinds, &(&1 in @ready))})
  end

  @doc "The backend sent a message of type `tag`."
  @spec received(t(), byte()) :: t()
  def received(%__MODULE__{unknown: true} = in_flight, _tag), do: in_flight

  def received(%__MODULE__{queue: queue} = in_flight, tag) do
    case :queue.peek(queue) do
      :empty -> in_flight
      {:value, head} -> answer(in_flight, head, tag)
    end
  end

  # ReadyForQuery ends the first Query, FunctionCall or Sync. Whatever is before it
  # could only be there if the model were wrong: it goes too, so one ReadyForQuery
  # never leaves more owed than the old count did.
  defp answer(in_flight, _head, ?Z), do: pop_through_ready(in_flight)
  defp answer(in_flight, head, ?E) when head in @extended, do: skip(%{pop(in_flight) | skipping: true})
  defp answer(in_flight, head, tag), do: if(finishes?(head, tag), do: pop(in_flight), else: in_flight)

  defp finishes?(?P, ?1), do: true
  defp finishes?(?B, ?2), do: true
  defp finishes?(?C, ?3), do: true
  defp finishes?(?D, tag), do: tag in [?T, ?n]
  defp finishes?(?E, tag), do: tag in [?C, ?I, ?s]
  defp finishes?(_head, _tag), do: false

  defp pop_through_ready(in_flight) do
    case :queue.peek(in_flight.queue) do
      {:value, tag} when tag in @ready -> pop(in_flight)
      {:value, _} -> in_flight |> pop() |> pop_through_ready()
      :empty -> in_flight
    end
  end

  defp pop(%{queue: queue} = in_flight) do
    case :queue.out(queue) do
      {{:value, tag}, rest} when tag in @ready -> %{in_flight | queue: rest, ready_done: in_flight.ready_done + 1}
      {_, rest} -> %{in_flight | queue: rest}
    end
  end

  # While skipping, the backend reads and drops everything up to a Sync, which it runs.
  defp skip(%{skipping: false} = in_flight), do: in_flight

  defp skip(%{queue: queue} = in_flight) do
    case :queue.peek(queue) do
      {:value, ?S} -> %{in_flight | skipping: false}
      {:value, _} -> in_flight |> pop() |> skip()
      :empty -> in_flight
    end
  end

  @doc "Nothing owed: every message written has had its reply."
  @spec empty?(t()) :: boolean()
  def empty?(%__MODULE__{unknown: true}), do: false
  def empty?(%__MODULE__{queue: queue}), do: :queue.is_empty(queue)

  @doc """
  The backend skips the client's messages until its Sync: the client's sequence is not
  over even with nothing owed, as on a server.
  """
  @spec skipping?(t()) :: boolean()
  def skipping?(%__MODULE__{skipping: skipping}), do: skipping

  @doc "A Query, FunctionCall or Sync sent has not been answered (or skipped) yet."
  @spec ready_owed?(t()) :: boolean()
  def ready_owed?(%__MODULE__{unknown: true}), do: true
  def ready_owed?(%__MODULE__{} = in_flight), do: in_flight.ready_done < in_flight.ready_sent

  @doc """
  A mark of what was sent so far, for `answered?/2`. The backend answers every Query,
  FunctionCall and Sync before it reads more input, unless it waits for COPY data: if
  it waits for input while one sent before the mark is unanswered, this model is wrong
  (a wedge).
  """
  @spec mark(t()) :: non_neg_integer()
  def mark(%__MODULE__{ready_sent: sent}), do: sent

  @doc "Every Query, FunctionCall and Sync sent before `mark` is answered or skipped."
  @spec answered?(t(), non_neg_integer()) :: boolean()
  def answered?(%__MODULE__{ready_done: done}, mark), do: done >= mark
end
