defmodule PgliteEx.Server.Statements do
  @moduledoc """
  Per-client names for prepared statements and portals. Clients share one backend, so
  a named statement or portal `s1` of client 7 becomes `c7_s1` on the way in; the
  unnamed ones stay unnamed (a client uses them only within its own turn).

  Also reports what a batch of messages means for the turn: how many ReadyForQuery
  replies it will produce and whether it leaves an extended-protocol sequence open.
  """

  alias PgliteEx.Wire

  @typedoc "What a batch does: renamed messages and the notes for `PgliteEx.submit/3`."
  @type batch :: %{
          payload: iodata(),
          rfq: non_neg_integer(),
          open: boolean(),
          prepared: [String.t()],
          closed: [String.t()],
          deferrable: boolean()
        }

  @extended ~c"PBDECH"

  @doc "Renames the names in a batch of whole messages from client `id`."
  @spec rewrite([{byte(), binary(), binary()}], pos_integer(), boolean()) :: batch()
  def rewrite(messages, id, open) do
    prefix = "c#{id}_"
    acc = %{payload: [], rfq: 0, open: open, prepared: [], closed: [], deferrable: false}

    messages
    |> Enum.reduce(acc, fn {tag, body, raw}, acc ->
      {message, acc} = rename(tag, body, raw, prefix, acc)
      acc = %{acc | payload: [acc.payload, message]}

      cond do
        tag in [?Q, ?S, ?F] -> %{acc | rfq: acc.rfq + 1, open: false}
        tag in @extended -> %{acc | open: true}
        true -> acc
      end
    end)
    |> Map.put(:deferrable, not open and parse_only?(messages))
  end

  @doc "True for one or more Parse messages followed by a single Sync."
  @spec parse_only?([{byte(), binary(), binary()}]) :: boolean()
  def parse_only?(messages) do
    case Enum.reverse(messages) do
      [{?S, _, _} | [_ | _] = parses] -> Enum.all?(parses, &match?({?P, _, _}, &1))
      _ -> false
    end
  end

  defp rename(?P, body, raw, prefix, acc) do
    with {name, rest} when name != "" <- Wire.cstring(body) do
      {Wire.message(?P, [prefix, name, 0, rest]), %{acc | prepared: [prefix <> name | acc.prepared]}}
    else
      _ -> {raw, acc}
    end
  end

  defp rename(?B, body, raw, prefix, acc) do
    with {portal, rest} <- Wire.cstring(body),
         {statement, rest} <- Wire.cstring(rest) do
      {Wire.message(?B, [named(prefix, portal), 0, named(prefix, statement), 0, rest]), acc}
    else
      _ -> {raw, acc}
    end
  end

  defp rename(tag, <<kind, body::binary>>, raw, prefix, acc) when tag in [?D, ?C] and kind in [?S, ?P] do
    with {name, rest} when name != "" <- Wire.cstring(body) do
      acc = if tag == ?C and kind == ?S, do: %{acc | closed: [prefix <> name | acc.closed]}, else: acc
      {Wire.message(tag, [kind, prefix, name, 0, rest]), acc}
    else
      _ -> {raw, acc}
    end
  end

  defp rename(?E, body, raw, prefix, acc) do
    with {portal, rest} when portal != "" <- Wire.cstring(body) do
      {Wire.message(?E, [prefix, portal, 0, rest]), acc}
    else
      _ -> {raw, acc}
    end
  end

  defp rename(_tag, _body, raw, _prefix, acc), do: {raw, acc}

  defp named(_prefix, ""), do: ""
  defp named(prefix, name), do: prefix <> name
end
