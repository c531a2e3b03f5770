defmodule PgliteEx.Server.TurnEnd do
  @moduledoc """
  Whether a payload surely ends its client's turn: sent while the client holds no
  transaction, COPY or unfinished extended sequence, it leaves the backend idle with
  the session unchanged. `PgliteEx` may then write the next waiting client's request
  to the port right behind it, so the backend never waits for the round trip through
  the BEAM between two clients.

  Only BEGIN or START TRANSACTION opens a transaction block and only COPY enters COPY
  mode, so a Query or Parse text without the words `begin`, `start` and `copy` (and
  one that cannot change the session, `PgliteEx.SessionState.may_change?/1`)
  qualifies, and so does a Bind of a statement parsed from such a text; in a
  transaction, a lone COMMIT, END, ROLLBACK or ABORT Query does. The check is textual
  and errs one way only: a text that merely mentions a word waits its turn.
  """

  @words ~w(begin start copy)
  # Every word that can make a text risky, looked for at once: most texts have none.
  @risky_words @words ++ PgliteEx.SessionState.change_words()

  # "rollback transaction;" with room for spaces and the terminating NUL.
  @longest_end 64
  @ends_transaction ~r/\A\s*(?:commit|end|rollback|abort)(?:\s+(?:work|transaction))?\s*;?\s*\z/i

  @doc """
  The client's statement names (as the client spells them, `""` for the unnamed one)
  whose text has one of the words, after `messages`.
  """
  @spec track([{byte(), binary(), binary()}], MapSet.t(String.t())) :: MapSet.t(String.t())
  def track(messages, unsafe) do
    Enum.reduce(messages, unsafe, fn
      {?P, body, _}, acc ->
        case cstrings(body, 2) do
          [name, text] -> if risky?(text), do: MapSet.put(acc, name), else: MapSet.delete(acc, name)
          _ -> acc
        end

      {?C, <<?S, body::binary>>, _}, acc ->
        case cstrings(body, 1) do
          [name] -> MapSet.delete(acc, name)
          _ -> acc
        end

      _, acc ->
        acc
    end)
  end

  @doc """
  True when `messages` (ending in Query or Sync, with no COPY data) end the turn, given
  the statement names `track/2` found risky before them.
  """
  @spec ends_turn?([{byte(), binary(), binary()}], MapSet.t(String.t())) :: boolean()
  def ends_turn?(messages, unsafe) do
    match?({tag, _, _} when tag in [?Q, ?S], List.last(messages)) and synced?(messages) and
      Enum.all?(messages, fn
        {?Q, body, _} -> not risky?(body)
        {?P, body, _} -> not risky?(parse_text(body))
        {?B, body, _} -> bound_safe?(body, unsafe)
        {tag, _, _} -> tag in ~c"DEHSC"
      end)
  end

  @doc """
  True for a single Query that ends a transaction block (COMMIT, END, ROLLBACK, ABORT,
  without AND CHAIN): sent in a transaction, it too ends the turn. A text longer than
  any of them with a little space around is not looked at (this runs on every
  turn-ending Query): it counts as not ending one, which only means no request is
  queued behind it.
  """
  @spec ends_transaction?([{byte(), binary(), binary()}]) :: boolean()
  def ends_transaction?([{?Q, body, _}]) when byte_size(body) <= @longest_end do
    # The regex only for a text that starts as one of them does (it cost ~2 us a query).
    starts_like_an_end?(body) and Regex.match?(@ends_transaction, String.trim_trailing(body, <<0>>))
  end

  def ends_transaction?(_messages), do: false

  defp starts_like_an_end?(body) do
    case String.trim_leading(body) do
      <<letter, _::binary>> -> letter in ~c"cCeErRaA"
      _ -> false
    end
  end

  # A Sync follows the last extended-protocol message: an error in one makes the
  # backend skip to the next Sync, Queries included, so without one the next client's
  # request written behind would be skipped too.
  defp synced?(messages) do
    case messages |> Enum.reverse() |> Enum.drop_while(&match?({?Q, _, _}, &1)) do
      [] -> true
      [{?S, _, _} | _] -> true
      _ -> false
    end
  end

  defp bound_safe?(body, unsafe) do
    case cstrings(body, 2) do
      [_portal, statement] -> not MapSet.member?(unsafe, statement)
      _ -> false
    end
  end

  # The first n NUL-terminated strings of a message body ([] if it has fewer).
  defp cstrings(_body, 0), do: []

  defp cstrings(body, n) do
    case PgliteEx.Wire.cstring(body) do
      {string, rest} -> [string | cstrings(rest, n - 1)]
      :error -> []
    end
  end

  defp parse_text(body) do
    case cstrings(body, 2) do
      [_name, text] -> text
      _ -> nil
    end
  end

  defp risky?(nil), do: true

  defp risky?(text) do
    PgliteEx.Words.any?(text, :turn_risky, @risky_words) and
      (PgliteEx.Words.any?(text, :turn_opening, @words) or PgliteEx.SessionState.may_change_sql?(text))
  end
end
