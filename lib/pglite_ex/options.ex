defmodule PgliteEx.Options do
  @moduledoc """
  Validation of the options of `Pglite.start_link/1`.

  Every option is checked for its name and type; anything else is
  `{:error, {:invalid_option, {name, value}}}` (or `{:invalid_option, name}` for an
  unknown name) before any process or file is created.
  """

  @type t :: %{
          database: String.t(),
          username: String.t(),
          password: String.t(),
          data_dir: String.t() | nil,
          memory: boolean(),
          template: String.t() | nil,
          timeout: pos_integer(),
          name: GenServer.name() | nil,
          tcp_port: nil | 0..65535,
          port_executable: String.t() | nil,
          socket_dir: String.t() | nil,
          port: 1..65535,
          env: [{String.t(), String.t()}],
          idle_in_transaction_timeout: non_neg_integer(),
          authentication_timeout: pos_integer(),
          busy_wait_us: 0..100_000
        }

  @defaults %{
    database: "postgres",
    username: "postgres",
    password: "postgres",
    data_dir: nil,
    memory: true,
    template: nil,
    timeout: 60_000,
    name: nil,
    tcp_port: nil,
    port_executable: nil,
    socket_dir: nil,
    port: 5432,
    env: [],
    idle_in_transaction_timeout: 10_000,
    authentication_timeout: 60_000,
    busy_wait_us: 1_000
  }

  @doc "The option names `Pglite.start_link/1` accepts."
  @spec names() :: [atom()]
  def names, do: Map.keys(@defaults)

  @doc """
  Validates a keyword list. `data_dir` given means `memory: false` unless `memory` is
  given too; `memory: false` needs a `data_dir`.
  """
  @spec validate(keyword()) :: {:ok, t()} | {:error, {:invalid_option, term()}}
  def validate(opts) when is_list(opts) do
    if Keyword.keyword?(opts) do
      Enum.reduce_while(opts, {:ok, @defaults}, fn {key, value}, {:ok, acc} ->
        case check(key, value) do
          :ok -> {:cont, {:ok, Map.put(acc, key, value)}}
          :unknown -> {:halt, {:error, {:invalid_option, key}}}
          :error -> {:halt, {:error, {:invalid_option, {key, value}}}}
        end
      end)
      |> resolve_storage(opts)
    else
      {:error, {:invalid_option, opts}}
    end
  end

  def validate(other), do: {:error, {:invalid_option, other}}

  defp resolve_storage({:ok, o}, given) do
    cond do
      Keyword.has_key?(given, :data_dir) and not Keyword.has_key?(given, :memory) ->
        {:ok, %{o | memory: false}}

      o.memory == false and is_nil(o.data_dir) ->
        {:error, {:invalid_option, {:memory, false}}}

      o.memory == true and is_binary(o.data_dir) ->
        {:error, {:invalid_option, {:data_dir, o.data_dir}}}

      true ->
        {:ok, o}
    end
  end

  defp resolve_storage(error, _given), do: error

  defp check(key, v) when key in [:database, :username] and is_binary(v),
    do: if(v != "" and not String.contains?(v, <<0>>), do: :ok, else: :error)

  defp check(:password, v) when is_binary(v), do: :ok
  defp check(:data_dir, v) when is_binary(v) and v != "", do: :ok
  defp check(:data_dir, nil), do: :ok
  defp check(:memory, v) when is_boolean(v), do: :ok
  defp check(:template, nil), do: :ok
  defp check(:template, v) when is_binary(v) and v != "", do: :ok
  defp check(:timeout, v) when is_integer(v) and v > 0, do: :ok
  defp check(:idle_in_transaction_timeout, v) when is_integer(v) and v >= 0, do: :ok
  defp check(:authentication_timeout, v) when is_integer(v) and v > 0, do: :ok
  defp check(:busy_wait_us, v) when is_integer(v) and v in 0..100_000, do: :ok
  defp check(:name, nil), do: :ok
  defp check(:name, v) when is_atom(v), do: :ok
  defp check(:name, {:global, _}), do: :ok
  defp check(:name, {:via, m, _}) when is_atom(m), do: :ok
  defp check(:tcp_port, nil), do: :ok
  defp check(:tcp_port, v) when is_integer(v) and v in 0..65535, do: :ok
  defp check(:port, v) when is_integer(v) and v in 1..65535, do: :ok
  defp check(:port_executable, nil), do: :ok
  defp check(:port_executable, v) when is_binary(v) and v != "", do: :ok
  defp check(:socket_dir, nil), do: :ok
  defp check(:socket_dir, v) when is_binary(v) and v != "", do: :ok

  defp check(:env, v) when is_list(v) do
    if Enum.all?(v, &match?({k, val} when is_binary(k) and is_binary(val), &1)), do: :ok, else: :error
  end

  defp check(key, _v) do
    if Map.has_key?(@defaults, key), do: :error, else: :unknown
  end
end
