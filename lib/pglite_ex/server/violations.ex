defmodule PgliteEx.Server.Violations do
  @moduledoc """
  Frontend messages that a server refuses from a connection once it is ready, found
  before they reach the shared backend. On a server the offending connection's own
  backend ends; here every client shares one, so a message that would make it FATAL
  must never get there: its connection alone is answered and closed, with the
  server's SQLSTATE and words (`postgres.c` `SocketBackend`, `copyfromparse.c`
  `CopyGetData`):

    * a message type the backend does not take (`p`, a password message, included):
      FATAL `08P01` "invalid frontend message type N";
    * a message longer than PostgreSQL's small-message limit (10,000 bytes) for the
      types that have it (Describe, Close, Execute, Sync, Flush, Terminate, CopyDone,
      CopyFail): a server closes the connection ("invalid message length" in its log);
    * Sync, Flush, Terminate or CopyDone with a body: "invalid message format";
    * during COPY FROM STDIN, anything but CopyData, CopyDone, CopyFail, Flush and Sync:
      ERROR `08P01` "unexpected message type 0xNN during COPY from stdin", then FATAL
      "terminating connection because protocol synchronization was lost".

  Where a server answers "invalid message format" with an ERROR and goes on, the
  connection is closed instead (README, Limits): the backend's reply to the rest of
  the batch could not be told apart from it.
  """

  alias PgliteEx.Wire

  @ready ~c"QPBEDCSHFdcfX"
  # PQ_SMALL_MESSAGE_LIMIT, for the types that PostgreSQL reads with it.
  @small_limit 10_000
  @small ~c"DCESHXcf"
  @bodiless ~c"SHXc"
  @in_copy ~c"dcfHS"

  @doc """
  Checks `messages` in order, the client being in COPY FROM STDIN (`copy_in`) at the
  first one. Returns `{:ok, copy_in}` (whether it still is after them) or
  `{:close, replies}`: the messages to send the client before closing it.
  """
  @spec check([{byte(), binary(), binary()}], boolean()) :: {:ok, boolean()} | {:close, [binary()]}
  def check(messages, copy_in), do: Enum.reduce_while(messages, {:ok, copy_in}, &check_one/2)

  defp check_one({tag, _, _}, {:ok, true}) when tag not in @in_copy do
    hex = tag |> Integer.to_string(16) |> String.pad_leading(2, "0")

    {:halt,
     {:close,
      [
        Wire.error("ERROR", "08P01", "unexpected message type 0x#{hex} during COPY from stdin"),
        Wire.error("FATAL", "08P01", "terminating connection because protocol synchronization was lost")
      ]}}
  end

  defp check_one({tag, _, _}, _acc) when tag not in @ready,
    do: {:halt, {:close, [Wire.error("FATAL", "08P01", "invalid frontend message type #{tag}")]}}

  defp check_one({tag, body, _}, _acc) when tag in @small and byte_size(body) + 4 > @small_limit,
    do: {:halt, {:close, [Wire.error("FATAL", "08P01", "invalid message length #{byte_size(body) + 4} for message type #{<<tag>>}")]}}

  defp check_one({tag, body, _}, _acc) when tag in @bodiless and body != "",
    do: {:halt, {:close, [Wire.error("FATAL", "08P01", "invalid message format")]}}

  defp check_one({tag, _, _}, {:ok, copy_in}), do: {:cont, {:ok, copy_in and tag not in ~c"cf"}}

  @doc """
  Splits a batch after a Query that may start COPY FROM STDIN (its text names
  `stdin`) and the COPY messages right behind it: `{now, later, release}`. `later`
  (from the first other message on), and whatever the client sends next, must wait
  until the backend has said whether the COPY started: inside it, a Query is refused
  as a server refuses it; sent along, it would reach the shared backend in COPY,
  which ends it for everyone. `release` (nil when there is no such Query):
  `{:ready, n}` when `now` ends the COPY itself (CopyDone or CopyFail), so only the
  n-th ReadyForQuery (the COPY's) tells; `{:copy, n}` when a CopyInResponse tells too.
  """
  @spec split_at_copy([{byte(), binary(), binary()}]) :: {list(), list(), nil | {:ready | :copy, pos_integer()}}
  def split_at_copy(messages) do
    case Enum.split_while(messages, &(not copy_query?(&1))) do
      {_, []} ->
        {messages, [], nil}

      {before, [copy | rest]} ->
        {data, later} = Enum.split_while(rest, fn {tag, _, _} -> tag in @in_copy end)
        # Each Query, FunctionCall and Sync before it is answered by one ReadyForQuery.
        n = Enum.count(before, fn {tag, _, _} -> tag in ~c"QSF" end) + 1
        ends? = Enum.any?(data, fn {tag, _, _} -> tag in ~c"cf" end)
        {before ++ [copy | data], later, {if(ends?, do: :ready, else: :copy), n}}
    end
  end

  defp copy_query?({?Q, body, _}), do: PgliteEx.Words.any?(body, :copy_stdin, ["stdin"])
  defp copy_query?(_message), do: false

  @doc """
  Whether the client is in COPY FROM STDIN after the backend's `replies` (raw
  messages): CopyInResponse starts it; CommandComplete, ErrorResponse and
  ReadyForQuery end it.
  """
  @spec copy_in_after([binary()], boolean()) :: boolean()
  def copy_in_after(replies, copy_in) do
    Enum.reduce(replies, copy_in, fn
      <<?G, _::binary>>, _ -> true
      <<tag, _::binary>>, _ when tag in ~c"CEZ" -> false
      _, acc -> acc
    end)
  end
end
