defmodule PgliteEx.Notifications do
  @moduledoc """
  NotificationResponses in each listener's client encoding.

  The one backend writes a notification when the notifying transaction commits, in
  the client encoding its session has then: the notifier's. A server converts each
  notification into its own client's encoding, so a listener in another encoding must
  not get those bytes: its notifications are converted by the backend first, with a
  query that takes and gives hexadecimal text and so means the same in any encoding
  (`convert_sql/2`). A character the listener's encoding lacks ends its connection,
  as on a server. Pure: `PgliteEx.Arbiter` tracks the encodings and runs the query.
  """

  alias PgliteEx.{SessionState, Wire}

  @typedoc "A NotificationResponse's body after the notifier's pid: channel and payload, each NUL-ended."
  @type body :: binary()

  @doc """
  Takes the NotificationResponses out of a run of backend messages, each with the
  client encoding the backend had when it wrote it (ParameterStatus `client_encoding`
  changes it along the way). Returns them, the other messages, and the encoding after.
  """
  @spec split([{byte(), binary(), binary()}], String.t()) ::
          {[{body(), String.t()}], [{byte(), binary(), binary()}], String.t()}
  def split(messages, encoding) do
    {notifications, others, encoding} =
      Enum.reduce(messages, {[], [], encoding}, fn
        {?A, <<_pid::32, body::binary>>, _}, {n, o, enc} -> {[{body, enc} | n], o, enc}
        {?S, body, _} = m, {n, o, enc} -> {n, [m | o], reported_encoding(body) || enc}
        m, {n, o, enc} -> {n, [m | o], enc}
      end)

    {Enum.reverse(notifications), Enum.reverse(others), encoding}
  end

  defp reported_encoding(body) do
    case Wire.cstring(body) do
      {"client_encoding", rest} -> rest |> Wire.cstring() |> elem(0)
      _ -> nil
    end
  end

  @doc "The channel a notification is on (bytes in the encoding it was written in)."
  @spec channel(body()) :: binary()
  def channel(body), do: body |> Wire.cstring() |> elem(0)

  @doc """
  Whether a notification written in encoding `from` reads differently in `to`: the
  encodings differ and it has a byte that is not ASCII (every encoding PostgreSQL
  offers a client has ASCII as its first half).
  """
  @spec convert?(body(), String.t(), String.t()) :: boolean()
  def convert?(body, from, to), do: canonical(from) != canonical(to) and not SessionState.ascii?(body)

  # PostgreSQL compares encoding names ignoring case and non-alphanumerics.
  defp canonical(name), do: name |> String.upcase() |> String.replace(~r/[^A-Z0-9]/, "")

  @doc """
  One query converting each notification's channel and payload from the encoding it
  was written in into `to`; its rows are hexadecimal, in order (`parse/1`).
  """
  @spec convert_sql([{body(), String.t()}], String.t()) :: String.t()
  def convert_sql(notifications, to) do
    notifications
    |> Enum.with_index()
    |> Enum.map_join(" UNION ALL ", fn {{body, from}, i} ->
      {channel, rest} = Wire.cstring(body)
      {payload, _} = Wire.cstring(rest)
      "SELECT #{i}, #{convert(channel, from, to)}, #{convert(payload, from, to)}"
    end)
    |> Kernel.<>(" ORDER BY 1")
  end

  defp convert(text, from, to) do
    "pg_catalog.encode(pg_catalog.convert(pg_catalog.decode('#{Base.encode16(text)}', 'hex'), " <>
      "#{SessionState.literal(from)}, #{SessionState.literal(to)}), 'hex')"
  end

  @doc "The converted notification bodies from the reply to `convert_sql/2`, or the error."
  @spec parse([{byte(), binary()}]) :: {:ok, [body()]} | {:error, String.t(), String.t()}
  def parse(messages) do
    case Enum.find(messages, &match?({?E, _}, &1)) do
      {?E, body} ->
        fields = Wire.fields(body)
        {:error, fields[?C] || "22P05", fields[?M] || "notification not convertible"}

      nil ->
        {:ok,
         for {?D, row} <- messages do
           [_, channel, payload] = Wire.data_row(row)
           [Base.decode16!(channel, case: :mixed), 0, Base.decode16!(payload, case: :mixed), 0] |> IO.iodata_to_binary()
         end}
    end
  end
end
