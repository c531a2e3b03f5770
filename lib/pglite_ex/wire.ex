defmodule PgliteEx.Wire do
  @moduledoc """
  PostgreSQL v3 messages: splitting a byte stream into messages and building the
  few the front end sends itself. Shared by the port owner and the client connections.
  """

  @typedoc "A message type byte and its body (without type and length)."
  @type message :: {byte(), binary()}

  # PostgreSQL refuses frontend messages above 1 GiB.
  @max_len 0x3FFFFFFF

  @doc """
  Splits `buffer` into whole tagged messages and the incomplete rest.
  Returns `{:error, reason}` for a length below 4 or above 1 GiB.
  """
  @spec split(binary()) :: {:ok, [{byte(), binary(), binary()}], binary()} | {:error, String.t()}
  def split(buffer), do: split(buffer, [])

  defp split(<<tag, len::32, _::binary>>, _acc) when len < 4 or len > @max_len,
    do: {:error, "invalid message length #{len} for message type #{inspect(<<tag>>)}"}

  defp split(<<tag, len::32, rest::binary>> = all, acc) when byte_size(rest) >= len - 4 do
    body_len = len - 4
    <<body::binary-size(body_len), tail::binary>> = rest
    raw = binary_part(all, 0, len + 1)
    split(tail, [{tag, body, raw} | acc])
  end

  defp split(rest, acc), do: {:ok, Enum.reverse(acc), rest}

  @doc "A tagged message."
  @spec message(byte(), iodata()) :: binary()
  def message(tag, body) do
    body = IO.iodata_to_binary(body)
    <<tag, byte_size(body) + 4::32, body::binary>>
  end

  @spec ready_for_query(byte()) :: binary()
  def ready_for_query(status), do: message(?Z, <<status>>)

  @spec parameter_status(String.t(), String.t()) :: binary()
  def parameter_status(name, value), do: message(?S, [name, 0, value, 0])

  @spec backend_key_data(non_neg_integer(), non_neg_integer()) :: binary()
  def backend_key_data(pid, secret), do: message(?K, <<pid::32, secret::32>>)

  @spec authentication(non_neg_integer(), binary()) :: binary()
  def authentication(code, data \\ ""), do: message(?R, <<code::32, data::binary>>)

  @doc "An ErrorResponse; `severity` is \"ERROR\" or \"FATAL\"."
  @spec error(String.t(), String.t(), String.t()) :: binary()
  def error(severity, code, text) do
    message(?E, [?S, severity, 0, ?V, severity, 0, ?C, code, 0, ?M, text, 0, 0])
  end

  @spec query(String.t()) :: binary()
  def query(sql), do: message(?Q, [sql, 0])

  @spec sync() :: binary()
  def sync, do: message(?S, "")

  @spec terminate() :: binary()
  def terminate, do: message(?X, "")

  @doc "The fields of an ErrorResponse or NoticeResponse as a map of field byte to text."
  @spec fields(binary()) :: %{byte() => String.t()}
  def fields(body) do
    body
    |> :binary.split(<<0>>, [:global])
    |> Enum.reject(&(&1 == ""))
    |> Map.new(fn <<code, text::binary>> -> {code, text} end)
  end

  @doc "The values of a DataRow body (text format): binaries, nil for NULL."
  @spec data_row(binary()) :: [binary() | nil]
  def data_row(<<_count::16, values::binary>>), do: values(values, [])

  defp values("", acc), do: Enum.reverse(acc)
  defp values(<<-1::signed-32, rest::binary>>, acc), do: values(rest, [nil | acc])
  defp values(<<len::32, value::binary-size(len), rest::binary>>, acc), do: values(rest, [value | acc])

  @doc "Splits a NUL-terminated string off the front of a binary."
  @spec cstring(binary()) :: {binary(), binary()} | :error
  def cstring(bin) do
    case :binary.match(bin, <<0>>) do
      {pos, 1} -> {binary_part(bin, 0, pos), binary_part(bin, pos + 1, byte_size(bin) - pos - 1)}
      :nomatch -> :error
    end
  end
end
