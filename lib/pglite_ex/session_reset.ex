defmodule PgliteEx.SessionReset do
  @moduledoc """
  `DEALLOCATE ALL` and `DISCARD ALL` reach only the session of the client that sends
  them, as on a server, where the session is the client's alone. On the shared
  backend they would close every client's prepared statements (their next use failing
  with `26000`) and drop every client's TEMP tables and holdable cursors. `RESET ALL`
  (and `DISCARD ALL`, and `RESET name` of one of them) puts back the settings the
  client's StartupMessage asked for, as a server resets to them; on the shared backend
  they are the client's `set_config`s, which RESET alone would drop (JDBC's
  `extra_float_digits`, `DateStyle`).

  The connection marks a simple Query that is just one of them, or an extended one
  (Parse, Bind, Describe, one Execute, Sync: what libpq's `PQexecParams` and psycopg's
  pipeline mode send) (`kind/1`). When its
  turn writes it, `PgliteEx.Arbiter` sends in its place (`substitute/4`) Close
  messages for the client's own prepared statements (for `DISCARD ALL` its holdable
  cursors too) and a Query that does the rest for this client alone; the replies to
  them reach the client as the server answers the statement (`reply/2`): the same
  command tag (psycopg clears its statement cache on it), errors as they come, and
  ReadyForQuery; for the extended form, ParseComplete, BindComplete and NoData before
  them (`front/1`).

  Left as written, and so failing as on a server: `DISCARD ALL` inside a transaction
  block (`25001`), any of them in a failed transaction (`25P02`).
  `pg_advisory_unlock_all()`, part of `DISCARD ALL` on a server, is left out: the
  backend's session-level advisory locks cannot be told apart by client.
  """

  alias PgliteEx.{SessionState, Wire}

  @typedoc "Which statement."
  @type kind :: :deallocate_all | :discard_all | :reset_all | {:reset, String.t()}

  @typedoc """
  A substitute's replies still to come: whose, the number of its ReadyForQuery among
  the turn's, its tag, whether it failed, and the replies owed to the extended form's
  messages before the first one shown.
  """
  @type pending :: %{pid: pid(), ready: non_neg_integer(), tag: String.t(), failed: boolean(), front: [{byte(), binary(), binary()}]}

  @longest 80
  # The Query's text with its terminating NUL.
  @deallocate_all ~r/\Adeallocate\s+(?:prepare\s+)?all\s*;?\s*\x00\z/i
  @discard_all ~r/\Adiscard\s+all\s*;?\s*\x00\z/i
  @reset_all ~r/\Areset\s+all\s*;?\s*\x00\z/i
  @reset_one ~r/\Areset\s+([a-z_][a-z0-9_.]*)\s*;?\s*\x00\z/i

  @doc "`:deallocate_all`, `:discard_all`, `:reset_all` or `{:reset, name}` for a batch that is just that simple Query, else nil."
  @spec kind([{byte(), binary(), binary()}]) :: kind() | nil
  def kind([{?Q, body, _}]) when byte_size(body) <= @longest do
    # Most short queries (BEGIN, COMMIT, SELECT 1) are told apart by their first letter.
    case String.trim_leading(body) do
      <<first, _::binary>> = sql when first in ~c"dDrR" ->
        cond do
          Regex.match?(@deallocate_all, sql) -> :deallocate_all
          Regex.match?(@discard_all, sql) -> :discard_all
          Regex.match?(@reset_all, sql) -> :reset_all
          match = Regex.run(@reset_one, sql, capture: :all_but_first) -> {:reset, String.downcase(hd(match))}
          true -> nil
        end

      _ ->
        nil
    end
  end

  # The extended form: Parse of the statement as the unnamed one (a named one would
  # outlive a RESET here), then Bind (no parameters), Describe and one Execute, then Sync.
  def kind([{?P, <<0, after_name::binary>>, _} | rest]) when byte_size(after_name) < @longest do
    with {sql, _types} <- Wire.cstring(after_name),
         true <- one_execution?(rest) do
      kind([{?Q, sql <> <<0>>, nil}])
    else
      _ -> nil
    end
  end

  def kind(_messages), do: nil

  defp one_execution?(messages) do
    {body, last} = Enum.split(messages, -1)

    match?([{?S, _, _}], last) and Enum.count(body, &match?({?E, _, _}, &1)) == 1 and
      Enum.all?(body, fn
        {?B, bind, _} -> no_parameters?(bind)
        {tag, _, _} -> tag in ~c"DE"
      end)
  end

  defp no_parameters?(bind) do
    with {_portal, rest} <- Wire.cstring(bind),
         {_statement, <<formats::16, _::binary-size(formats * 2), 0::16, _::binary>>} <- Wire.cstring(rest) do
      true
    else
      _ -> false
    end
  end

  @doc """
  What a server answers the extended form's Parse, Bind and Describe with (ParseComplete,
  BindComplete, ParameterDescription and NoData: the statements take no parameters and
  return no rows); nothing for a simple Query.
  """
  @spec front([{byte(), binary(), binary()}]) :: [{byte(), binary(), binary()}]
  def front(messages) do
    Enum.flat_map(messages, fn
      {?P, _, _} -> [reply_message(?1, "")]
      {?B, _, _} -> [reply_message(?2, "")]
      {?D, <<?S, _::binary>>, _} -> [reply_message(?t, <<0::16>>), reply_message(?n, "")]
      {?D, _, _} -> [reply_message(?n, "")]
      _ -> []
    end)
  end

  defp reply_message(tag, body), do: {tag, body, IO.iodata_to_binary(Wire.message(tag, body))}

  @doc """
  What to send instead, for a client with `statements` (its protocol statements, by
  their backend names, with their Parse messages), session `objects` (`PgliteEx.SessionState`), the settings of
  its StartupMessage (`startup`) and SQL-level statement names `sql_statements`, with
  the backend's transaction `status`: `{payload, kinds, closed}`, or nil to send the
  statement as written.
  """
  @spec substitute(kind(), byte(), %{statements: %{String.t() => binary()}, objects: MapSet.t(), startup: map()}, [String.t()]) ::
          {iodata(), [byte()], [String.t()]} | nil
  def substitute(:discard_all, status, _client, _sql_statements) when status != ?I, do: nil
  def substitute(_kind, ?E, _client, _sql_statements), do: nil
  def substitute(:reset_all, _status, client, _sql_statements), do: {Wire.query(reset_sql(client.startup)), ~c"Q", []}

  def substitute({:reset, name}, _status, client, _sql_statements) do
    case Enum.find(client.startup, fn {key, _} -> String.downcase(key) == name end) do
      nil -> nil
      {key, value} -> {Wire.query("RESET #{SessionState.quote_ident(name)}; " <> set_sql(%{key => value})), ~c"Q", []}
    end
  end

  def substitute(kind, _status, client, sql_statements) do
    statements =
      Enum.uniq(Enum.sort(Map.keys(client.statements)) ++ for({:prepared, name} <- Enum.sort(client.objects), do: name) ++ sql_statements)

    cursors = if kind == :discard_all, do: for({:cursor, name} <- Enum.sort(client.objects), do: name), else: []
    closes = Enum.map(statements, &Wire.message(?C, [?S, &1, 0])) ++ Enum.map(cursors, &Wire.message(?C, [?P, &1, 0]))
    kinds = Enum.map(closes, fn _ -> ?C end) ++ [?Q]
    {[closes, Wire.query(sql(kind, client))], kinds, statements}
  end

  # An empty query for DEALLOCATE ALL: the Close messages did it all.
  defp sql(:deallocate_all, _client), do: ""

  defp sql(:discard_all, client) do
    relations = Enum.filter(client.objects, fn {kind, _} -> kind not in [:prepared, :cursor] end)

    Enum.join(
      ["SET SESSION AUTHORIZATION DEFAULT", reset_sql(client.startup), "UNLISTEN *", "DISCARD PLANS", "DISCARD SEQUENCES"] ++
        SessionState.drop_statements(relations),
      "; "
    )
  end

  # RESET ALL, then the start-up settings back, as a server's RESET ALL leaves them.
  defp reset_sql(startup) when map_size(startup) == 0, do: "RESET ALL"

  defp reset_sql(startup), do: "RESET ALL; " <> set_sql(startup)

  defp set_sql(settings) do
    "SELECT " <>
      Enum.map_join(Enum.sort(settings), ", ", fn {name, value} ->
        "pg_catalog.set_config(#{SessionState.literal(name)}, #{SessionState.literal(value)}, false)"
      end)
  end

  @doc "The command tag a server answers the statement with."
  @spec tag(kind()) :: String.t()
  def tag(:deallocate_all), do: "DEALLOCATE ALL"
  def tag(:discard_all), do: "DISCARD ALL"
  def tag(:reset_all), do: "RESET"
  def tag({:reset, _name}), do: "RESET"

  @doc """
  One reply to a substitute, as the client sees it: the messages to deliver in its
  place and what is still pending (nil after the ReadyForQuery). Errors and
  ParameterStatus pass; the ReadyForQuery gets the statement's CommandComplete before
  it unless an error came; the rest (CloseComplete, the substitute's own
  CommandComplete, EmptyQueryResponse, the rows of `set_config`, notices of drops) is
  the front end's business.
  """
  @spec reply({byte(), binary(), binary()}, pending()) :: {[{byte(), binary(), iodata()}], pending() | nil}
  def reply({?Z, _, _} = ready, %{failed: true} = pending), do: {pending.front ++ [ready], nil}

  def reply({?Z, _, _} = ready, pending) do
    body = [pending.tag, 0]
    {pending.front ++ [{?C, IO.iodata_to_binary(body), IO.iodata_to_binary(Wire.message(?C, body))}, ready], nil}
  end

  def reply({?E, _, _} = error, pending), do: {pending.front ++ [error], %{pending | failed: true, front: []}}
  def reply({?S, _, _} = status, pending), do: {pending.front ++ [status], %{pending | front: []}}
  def reply(_other, pending), do: {[], pending}
end
