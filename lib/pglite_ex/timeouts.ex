defmodule PgliteEx.Timeouts do
  @moduledoc """
  Which timeout applies to a client of the shared backend, from its session settings
  (`PgliteEx.SessionState`) and the instance's `idle_in_transaction_timeout`.

    * Holding the backend idle: the client's own `idle_in_transaction_session_timeout`
      while in a transaction, and the instance's timeout while someone else waits; the
      shorter one wins.
    * Waiting in line: the client's `statement_timeout` or `lock_timeout`, whichever is
      shorter, as a server counts a lock wait.
  """

  @typedoc "A timeout that ends a wait: ms, SQLSTATE and message."
  @type wait :: {pos_integer(), String.t(), String.t()}

  @doc "ms after which a client holding the backend idle is disconnected, or nil."
  @spec idle(map(), byte(), boolean(), non_neg_integer()) :: pos_integer() | nil
  def idle(settings, status, others_waiting?, instance_ms) do
    own = if status in [?T, ?E], do: ms(settings["idle_in_transaction_session_timeout"]), else: 0
    instance = if others_waiting?, do: instance_ms, else: 0

    case Enum.filter([own, instance], &(&1 > 0)) do
      [] -> nil
      timeouts -> Enum.min(timeouts)
    end
  end

  @doc "The timeout that ends a client's wait in line, or nil."
  @spec wait(map()) :: wait() | nil
  def wait(settings) do
    [
      {ms(settings["statement_timeout"]), "57014", "canceling statement due to statement timeout"},
      {ms(settings["lock_timeout"]), "55P03", "canceling statement due to lock timeout"}
    ]
    |> Enum.filter(fn {ms, _, _} -> ms > 0 end)
    |> Enum.min_by(fn {ms, _, _} -> ms end, fn -> nil end)
  end

  @units %{"" => 1, "ms" => 1, "s" => 1_000, "min" => 60_000, "h" => 3_600_000, "d" => 86_400_000}

  @doc """
  A time setting in ms: a bare number is ms (as `pg_settings` reports it); the units
  PostgreSQL accepts in a StartupMessage or `options` (`5s`, `2min`) are converted.
  Anything else counts as 0 (no timeout).
  """
  @spec ms(String.t() | nil) :: non_neg_integer()
  def ms(nil), do: 0

  def ms(text) do
    with {n, unit} when n >= 0 <- Integer.parse(String.trim(text)),
         %{^unit => factor} <- @units do
      n * factor
    else
      _ -> 0
    end
  end
end
