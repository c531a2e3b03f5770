defmodule PgliteEx.Server.Statements do
  @moduledoc """
  Per-client names for prepared statements and portals. Clients share one backend, so
  a named statement or portal `s1` of client 7 becomes `c7_s1` on the way in; the
  unnamed ones stay unnamed (a client uses them only within its own turn), and so do
  the names of cursors and statements the client made in SQL (`DECLARE`, `PREPARE`),
  which it reaches through the protocol by their SQL names. A simple Query that is
  just `DEALLOCATE name` for a statement the client prepared through the protocol
  names its backend name too: psycopg (with libpq before 17) evicts statements from
  its cache that way.

  Also reports what a batch of messages means for the turn: the message types that get
  replies (`PgliteEx.InFlight.kinds/1`) and whether it leaves an extended-protocol
  sequence open.
  """

  alias PgliteEx.{SessionState, Wire}

  @typedoc "What a batch does: renamed messages and the notes for `PgliteEx.submit/3`."
  @type batch :: %{
          payload: iodata(),
          kinds: [byte()],
          open: boolean(),
          prepared: [{String.t(), binary()}],
          closed: [String.t()],
          deferrable: boolean()
        }

  # Messages that leave an extended-protocol sequence open until a Sync. Not Flush: it
  # only asks for what is owed, and after a Sync it opens nothing (psycopg sends one
  # after a pipeline's last Sync).
  @extended ~c"PBDEC"

  @deallocate ~r/\A\s*deallocate\s+(?:prepare\s+)?("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s*;?\s*\z/i

  @doc """
  Renames the names in a batch of whole messages from client `id`, but for those in
  `keep` (`{:portal | :statement, name}`, made in SQL).
  """
  @spec rewrite([{byte(), binary(), binary()}], pos_integer(), boolean(), MapSet.t()) :: batch()
  def rewrite(messages, id, open, keep \\ MapSet.new()) do
    names = {"c#{id}_", keep}
    acc = %{payload: [], open: open, prepared: [], closed: [], deferrable: false}

    messages
    |> Enum.reduce(acc, fn {tag, body, raw}, acc ->
      {message, acc} = rename(tag, body, raw, names, acc)
      acc = %{acc | payload: [acc.payload, message]}

      cond do
        tag in [?Q, ?S, ?F] -> %{acc | open: false}
        tag in @extended -> %{acc | open: true}
        true -> acc
      end
    end)
    |> Map.put(:deferrable, not open and parse_only?(messages))
    |> Map.put(:kinds, PgliteEx.InFlight.kinds(messages))
  end

  @doc "True for one or more Parse messages followed by a single Sync."
  @spec parse_only?([{byte(), binary(), binary()}]) :: boolean()
  def parse_only?(messages) do
    case Enum.reverse(messages) do
      [{?S, _, _} | [_ | _] = parses] -> Enum.all?(parses, &match?({?P, _, _}, &1))
      _ -> false
    end
  end

  # The renamed Parse is kept as it was sent (a copy, not a slice of the client's
  # buffer): a DEALLOCATE ALL of another client makes the arbiter send it again.
  defp rename(?P, body, raw, names, acc) do
    with {name, rest} when name != "" <- Wire.cstring(body),
         renamed when renamed != name <- named(names, :statement, name) do
      message = IO.iodata_to_binary(Wire.message(?P, [renamed, 0, rest]))
      {message, %{acc | prepared: [{renamed, message} | acc.prepared]}}
    else
      _ -> {raw, acc}
    end
  end

  defp rename(?B, body, raw, names, acc) do
    with {portal, rest} <- Wire.cstring(body),
         {statement, rest} <- Wire.cstring(rest) do
      {Wire.message(?B, [named(names, :portal, portal), 0, named(names, :statement, statement), 0, rest]), acc}
    else
      _ -> {raw, acc}
    end
  end

  defp rename(tag, <<kind, body::binary>>, raw, names, acc) when tag in [?D, ?C] and kind in [?S, ?P] do
    with {name, rest} when name != "" <- Wire.cstring(body),
         renamed when renamed != name <- named(names, if(kind == ?S, do: :statement, else: :portal), name) do
      acc = if tag == ?C and kind == ?S, do: %{acc | closed: [renamed | acc.closed]}, else: acc
      {Wire.message(tag, [kind, renamed, 0, rest]), acc}
    else
      _ -> {raw, acc}
    end
  end

  defp rename(?E, body, raw, names, acc) do
    with {portal, rest} when portal != "" <- Wire.cstring(body),
         renamed when renamed != portal <- named(names, :portal, portal) do
      {Wire.message(?E, [renamed, 0, rest]), acc}
    else
      _ -> {raw, acc}
    end
  end

  defp rename(?Q, body, raw, names, acc) do
    with {sql, _} <- Wire.cstring(body),
         [_, ident] <- Regex.run(@deallocate, sql),
         false <- String.downcase(ident) == "all",
         name = SessionState.identifier(ident),
         renamed when renamed != name <- named(names, :statement, name) do
      {Wire.query("DEALLOCATE " <> SessionState.quote_ident(renamed)), %{acc | closed: [renamed | acc.closed]}}
    else
      _ -> {raw, acc}
    end
  end

  defp rename(_tag, _body, raw, _names, acc), do: {raw, acc}

  defp named(_names, _kind, ""), do: ""

  defp named({prefix, keep}, kind, name) do
    if MapSet.member?(keep, {kind, name}), do: name, else: prefix <> name
  end
end
