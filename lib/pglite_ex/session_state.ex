defmodule PgliteEx.SessionState do
  @moduledoc """
  Per-client session state on a shared backend: settings (`SET`, `RESET`,
  `set_config(..., false)`, StartupMessage parameters), the session objects a client
  leaves behind (TEMP relations, SQL-level `PREPARE`d statements, `WITH HOLD` cursors)
  and its LISTEN channels.

  The backend holds one session at a time. After a turn in which a client may have
  changed its session (`may_change?/1`), `PgliteEx` runs `capture_sql/1` and keeps the
  answer as that client's state; before another client's turn, `restore_sql/1` puts that
  client's settings in place, but only when they differ from what the backend has. A
  client that goes away has its objects dropped with `drop_statements/1`.
  """

  alias PgliteEx.Wire

  @typedoc "Session settings: GUC name to value."
  @type settings :: %{String.t() => String.t()}

  @typedoc "What a capture found in the backend."
  @type capture :: %{settings: settings(), objects: MapSet.t(object()), channels: MapSet.t(String.t())}

  @typedoc "A session object, as `{kind, sql_name}`."
  @type object :: {:table | :view | :sequence | :foreign | :prepared | :cursor, String.t()}

  # Statements that change the session when they start a statement; the functions
  # and words that do it from anywhere in a statement.
  @changes ~r/(?:^|;)\s*(?:set|reset|discard|prepare|deallocate|declare|close|listen|unlisten|load)\b|\btemp(?:orary)?\b|pg_temp|set_config\s*\(|\bset\s+(?:session\s+)?role\b/i

  @idle_timeout_set ~r/\bset\s+(?:session\s+|local\s+)?idle_in_transaction_session_timeout\s*(?:=|to)\s*'?([0-9]+\s*[a-z]*)'?/i
  @listen ~r/(?:^|;)\s*(listen|unlisten)\s+("(?:[^"]|"")*"|\*|[^\s;]+)/i

  @sql_names ~r/(?:^|;)\s*(declare|prepare)\s+("(?:[^"]|"")*"|[^\s;(]+)/i

  # Custom settings (a dotted name, `app.tenant`): pg_settings does not list them.
  @custom_set ~r/(?:^|;)\s*set\s+(?:session\s+)?([a-z_][\w$]*\.[a-z_][\w$.]*)\s*(?:=|to\b)/i
  @custom_set_config ~r/set_config\s*\(\s*'([a-z_][\w$]*\.[a-z_][\w$.]*)'/i

  # Words without which @changes cannot match: the regex then runs only on the few
  # texts that have one (it ran on every query and cost ~5 us of each round trip).
  @change_words ~w(set discard prepare deallocate declare close listen load temp)

  # StartupMessage keys that are not settings.
  @not_settings ~w(user database replication options)

  @doc "True when messages from a client may change its session (Query or Parse text)."
  @spec may_change?([{byte(), binary(), binary()}]) :: boolean()
  def may_change?(messages), do: Enum.any?(sql_texts(messages), &may_change_sql?/1)

  @doc "The words without which `may_change_sql?/1` is false, lowercase."
  @spec change_words() :: [String.t()]
  def change_words, do: @change_words

  @doc "True when an SQL text may change the session."
  @spec may_change_sql?(String.t()) :: boolean()
  def may_change_sql?(sql) do
    PgliteEx.Words.any?(sql, :session_change, @change_words) and Regex.match?(@changes, sql)
  end

  @doc """
  The LISTEN and UNLISTEN statements in messages, in order: `{:listen, channel}`,
  `{:unlisten, channel}` or `:unlisten_all`. Channel names are folded as PostgreSQL
  folds identifiers.
  """
  @spec listen_ops([{byte(), binary(), binary()}]) :: [{:listen | :unlisten, String.t()} | :unlisten_all]
  def listen_ops(messages) do
    for text <- sql_texts(messages), [_, verb, name] <- Regex.scan(@listen, text) do
      case {String.downcase(verb), name} do
        {"unlisten", "*"} -> :unlisten_all
        {verb, name} -> {String.to_atom(verb), identifier(name)}
      end
    end
  end

  @doc """
  The custom settings (dotted names such as `app.tenant`) that messages set for the
  session with `SET` or `set_config`, lowercase. The backend keeps them, but
  `pg_settings` does not list them, so `capture_sql/1` asks for each by name.
  """
  @spec custom_names([{byte(), binary(), binary()}]) :: [String.t()]
  def custom_names(messages) do
    for text <- sql_texts(messages), regex <- [@custom_set, @custom_set_config], [_, name] <- Regex.scan(regex, text), uniq: true do
      String.downcase(name)
    end
  end

  @doc """
  The cursors (`DECLARE name`) and prepared statements (`PREPARE name`) that messages
  create in SQL, as `{:portal | :statement, name}`, folded as PostgreSQL folds
  identifiers. The protocol reaches them by those very names (a Describe or Execute of
  portal `name`, a Bind of statement `name`), so those names must not be renamed.
  """
  @spec sql_names([{byte(), binary(), binary()}]) :: [{:portal | :statement, String.t()}]
  def sql_names(messages) do
    for text <- sql_texts(messages), [_, verb, name] <- Regex.scan(@sql_names, text) do
      {if(String.downcase(verb) == "declare", do: :portal, else: :statement), identifier(name)}
    end
  end

  @doc """
  The value the last `SET [SESSION | LOCAL] idle_in_transaction_session_timeout`
  in messages gives it, or nil. The session's settings are read only after a turn,
  and a turn lasts the whole transaction; a server applies this one at once, inside
  the transaction too, so it is taken from the text.
  """
  @spec idle_timeout_set([{byte(), binary(), binary()}]) :: String.t() | nil
  def idle_timeout_set(messages) do
    messages
    |> sql_texts()
    |> Enum.flat_map(&Regex.scan(@idle_timeout_set, &1, capture: :all_but_first))
    |> List.last()
    |> case do
      [value] -> value
      nil -> nil
    end
  end

  @doc "Applies `listen_ops/1` to a set of channels."
  @spec apply_listen_ops(MapSet.t(String.t()), list()) :: MapSet.t(String.t())
  def apply_listen_ops(channels, ops) do
    Enum.reduce(ops, channels, fn
      {:listen, ch}, acc -> MapSet.put(acc, ch)
      {:unlisten, ch}, acc -> MapSet.delete(acc, ch)
      :unlisten_all, _acc -> MapSet.new()
    end)
  end

  defp sql_texts(messages) do
    for {tag, body, _} <- messages, tag in [?Q, ?P], text = sql_text(tag, body), text != nil, do: text
  end

  defp sql_text(?Q, body), do: body |> Wire.cstring() |> first()

  defp sql_text(?P, body) do
    with {_name, rest} <- Wire.cstring(body), {sql, _} <- Wire.cstring(rest), do: sql, else: (_ -> nil)
  end

  defp first({text, _}), do: text
  defp first(:error), do: nil

  @doc "An SQL identifier as PostgreSQL reads it: quoted as written, else folded to lower case."
  @spec identifier(String.t()) :: String.t()
  def identifier(<<?", _::binary>> = quoted), do: quoted |> String.slice(1..-2//1) |> String.replace(~s(""), ~s("))
  def identifier(name), do: String.downcase(name)

  @doc """
  Settings asked for in a StartupMessage: every parameter but user, database and
  replication, plus `-c name=value` (and `--name=value`) in `options`.
  """
  @spec startup_settings(%{String.t() => String.t()}) :: settings()
  def startup_settings(params) do
    from_options =
      params
      |> Map.get("options", "")
      |> String.split()
      |> options_settings(%{})

    params |> Map.drop(["" | @not_settings]) |> Map.merge(from_options)
  end

  defp options_settings(["-c", setting | rest], acc), do: options_settings(rest, put_setting(acc, setting))
  defp options_settings(["-c" <> setting | rest], acc), do: options_settings(rest, put_setting(acc, setting))
  defp options_settings(["--" <> setting | rest], acc), do: options_settings(rest, put_setting(acc, setting))
  defp options_settings([_ | rest], acc), do: options_settings(rest, acc)
  defp options_settings([], acc), do: acc

  defp put_setting(acc, setting) do
    case String.split(setting, "=", parts: 2) do
      [name, value] -> Map.put(acc, String.replace(name, "-", "_"), value)
      _ -> acc
    end
  end

  @doc """
  One simple query listing the backend's session: settings changed in the session,
  the role, TEMP relations, SQL-level prepared statements, holdable cursors and
  LISTEN channels, as rows of (kind, name, value).

  Setting values and relation names come as the hexadecimal of their UTF8, whatever
  the client's encoding: the SQL that puts them back or drops them (`restore_sql/1`,
  `drop_statements/1`) may run while another client's encoding is in place, so it is
  written in ASCII (`literal/1`, `quote_ident/1`).
  """
  @spec capture_sql(Enumerable.t()) :: String.t()
  def capture_sql(custom_names \\ []) do
    """
    SELECT 'setting', name, #{utf8_hex("setting")} FROM pg_catalog.pg_settings WHERE source = 'session'
    #{Enum.map_join(custom_names, "\n", &custom_setting_sql/1)}
    UNION ALL SELECT 'setting', 'role', #{utf8_hex("pg_catalog.current_setting('role')")} WHERE pg_catalog.current_setting('role') <> 'none'
    UNION ALL SELECT 'rel', c.relkind::text, #{utf8_hex("c.relname::text")} FROM pg_catalog.pg_class c
      WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind IN ('r', 'p', 'v', 'S', 'f')
    UNION ALL SELECT 'prepared', name, NULL FROM pg_catalog.pg_prepared_statements WHERE from_sql
    UNION ALL SELECT 'cursor', name, NULL FROM pg_catalog.pg_cursors WHERE is_holdable
    UNION ALL SELECT 'channel', c, NULL FROM pg_catalog.pg_listening_channels() c
    """
  end

  # A custom setting's value, unless it has none: RESET leaves it '' (not undefined).
  defp custom_setting_sql(name) do
    value = "pg_catalog.current_setting(#{literal(name)}, true)"
    "UNION ALL SELECT 'setting', #{literal(name)}, #{utf8_hex(value)} WHERE #{value} <> ''"
  end

  defp utf8_hex(text), do: "pg_catalog.encode(pg_catalog.convert_to(#{text}, 'UTF8'), 'hex')"

  @doc "Reads the DataRows of a `capture_sql/1` reply."
  @spec parse_capture([{byte(), binary()}]) :: capture()
  def parse_capture(messages) do
    empty = %{settings: %{}, objects: MapSet.new(), channels: MapSet.new()}

    for {?D, row} <- messages, reduce: empty do
      acc ->
        case Wire.data_row(row) do
          ["setting", name, value] -> %{acc | settings: Map.put(acc.settings, name, Base.decode16!(value, case: :lower))}
          ["rel", kind, name] -> %{acc | objects: MapSet.put(acc.objects, {relation(kind), Base.decode16!(name, case: :lower)})}
          ["prepared", name, _] -> %{acc | objects: MapSet.put(acc.objects, {:prepared, name})}
          ["cursor", name, _] -> %{acc | objects: MapSet.put(acc.objects, {:cursor, name})}
          ["channel", name, _] -> %{acc | channels: MapSet.put(acc.channels, name)}
          _ -> acc
        end
    end
  end

  defp relation("v"), do: :view
  defp relation("S"), do: :sequence
  defp relation("f"), do: :foreign
  defp relation(_), do: :table

  @doc """
  Whether a server would report `settings` exactly as given, so the backend need not
  be asked: none, or only an `application_name` of printable ASCII that fits a name
  (a server replaces other bytes with `?` and cuts it at 63).
  """
  @spec reported_as_given?(settings()) :: boolean()
  def reported_as_given?(settings) when map_size(settings) == 0, do: true

  def reported_as_given?(%{"application_name" => name} = settings) when map_size(settings) == 1,
    do: byte_size(name) < 64 and String.match?(name, ~r/\A[\x20-\x7e]*\z/)

  def reported_as_given?(_settings), do: false

  @doc """
  Puts `settings` in place of whatever the session had: RESET ALL (and the role, which
  RESET ALL leaves alone), then each setting with `set_config`.
  """
  @spec restore_sql(settings()) :: String.t()
  def restore_sql(settings) do
    sets =
      settings
      |> Enum.sort()
      |> Enum.map(fn {name, value} -> "pg_catalog.set_config(#{literal(name)}, #{literal(value)}, false)" end)

    case sets do
      [] -> "RESET ALL; RESET ROLE"
      _ -> "RESET ALL; RESET ROLE; SELECT " <> Enum.join(sets, ", ")
    end
  end

  @doc """
  Statements that drop the session objects a client left behind, one each, so that one
  already gone does not stop the others.
  """
  @spec drop_statements(Enumerable.t()) :: [String.t()]
  def drop_statements(objects) do
    objects
    |> Enum.sort()
    |> Enum.map(fn
      {:table, name} -> "DROP TABLE IF EXISTS pg_temp.#{quote_ident(name)} CASCADE"
      {:view, name} -> "DROP VIEW IF EXISTS pg_temp.#{quote_ident(name)} CASCADE"
      {:sequence, name} -> "DROP SEQUENCE IF EXISTS pg_temp.#{quote_ident(name)} CASCADE"
      {:foreign, name} -> "DROP FOREIGN TABLE IF EXISTS pg_temp.#{quote_ident(name)} CASCADE"
      {:prepared, name} -> "DEALLOCATE #{quote_ident(name)}"
      {:cursor, name} -> "CLOSE #{quote_ident(name)}"
    end)
  end

  @doc "LISTEN (or UNLISTEN) statements for channels; nil when there are none."
  @spec listen_sql(:listen | :unlisten, Enumerable.t()) :: String.t() | nil
  def listen_sql(verb, channels) do
    case Enum.map(channels, &"#{String.upcase(to_string(verb))} #{quote_ident(&1)}") do
      [] -> nil
      statements -> Enum.join(statements, "; ")
    end
  end

  @doc """
  `text` as an SQL string literal; E'' means the same whatever standard_conforming_strings
  is. UTF8 text beyond ASCII is written in ASCII (hexadecimal, converted from UTF8 by
  the backend), so the literal means the same in any client encoding.
  """
  @spec literal(binary()) :: String.t()
  def literal(text) do
    if ascii?(text) or not String.valid?(text),
      do: "E'" <> (text |> String.replace("\\", "\\\\") |> String.replace("'", "''")) <> "'",
      else: "pg_catalog.convert_from(pg_catalog.decode('#{Base.encode16(text, case: :lower)}', 'hex'), 'UTF8')"
  end

  @doc """
  `name` as a quoted SQL identifier; UTF8 beyond ASCII as Unicode escapes (`U&"..."`),
  which mean the same in any client encoding.
  """
  @spec quote_ident(binary()) :: String.t()
  def quote_ident(name) do
    if ascii?(name) or not String.valid?(name) do
      ~s(") <> String.replace(name, ~s("), ~s("")) <> ~s(")
    else
      escaped =
        for <<c::utf8 <- name>>, into: "" do
          case c do
            ?" -> ~s("")
            ?\\ -> "\\\\"
            c when c < 0x80 -> <<c>>
            c -> "\\+" <> String.pad_leading(Integer.to_string(c, 16), 6, "0")
          end
        end

      ~s(U&") <> escaped <> ~s(")
    end
  end

  @doc "Whether `text` is ASCII only: it then reads the same in every client encoding PostgreSQL offers."
  @spec ascii?(binary()) :: boolean()
  def ascii?(<<byte, rest::binary>>) when byte < 0x80, do: ascii?(rest)
  def ascii?(<<>>), do: true
  def ascii?(_), do: false
end
