defmodule PgliteEx.KeepAwake do
  @moduledoc """
  Keeps one BEAM scheduler busy while a lone client's request is in the port, so that
  the reply is seen the moment it comes.

  Why: the BEAM moves file descriptors it reads often (the port's pipe among them) to a
  pollset that only running schedulers check. When every scheduler sleeps while the
  port works, its reply waits for one to be woken: a Port round trip through `cat`
  took 100-120 µs on this project's VM, 35 µs with a process yielding in a loop
  beside it (and 32 µs in a VM started with `+IOs false`). `PgliteEx` pokes this
  process when it writes a request of the client that also wrote the one before, or of
  one inside its transaction (`alone?/3`; with several clients taking turns the
  schedulers are busy anyway) and tells it to rest when the port's next frame comes;
  it yields in a loop in between, for at most the window. It never spins while the
  client thinks, which on two cores would take the core that the client and the port
  need.
  """

  @doc """
  Starts the process for the calling owner; it ends when the owner does. With a window
  of 0 there is no process (`nil`), and `poke/1` and `rest/1` do nothing.
  """
  @spec start(non_neg_integer()) :: pid() | nil
  def start(0), do: nil

  def start(window_us) when is_integer(window_us) and window_us > 0 do
    owner = self()

    spawn(fn ->
      Process.monitor(owner)
      wait(window_us, nil)
    end)
  end

  @doc "A request went to the port: spin until `rest/1`, at most for the window."
  @spec poke(pid() | nil) :: :ok
  def poke(nil), do: :ok

  def poke(pid) do
    send(pid, {:poke, now()})
    :ok
  end

  @doc """
  Whether a request written now by client `writer` is one to wait for busily: it
  follows that client's own last request (`last_writer`), or the backend is inside the
  client's transaction (`status` of its last ReadyForQuery `T` or `E`), so nobody else
  can run until it ends, the first request after its turn began included.
  """
  @spec alone?(pid(), pid() | nil, byte()) :: boolean()
  def alone?(writer, last_writer, status), do: writer == last_writer or status in [?T, ?E]

  @doc "The port's reply has come: stop spinning."
  @spec rest(pid() | nil) :: :ok
  def rest(nil), do: :ok

  def rest(pid) do
    send(pid, :rest)
    :ok
  end

  # `since`: when the last poke came, nil while resting. Resting, it waits for a message;
  # poked, it looks for one without waiting and yields between looks.
  defp wait(window, since) do
    receive do
      {:poke, at} -> wait(window, at)
      :rest -> wait(window, nil)
      {:DOWN, _, :process, _, _} -> :ok
    after
      if(since, do: 0, else: :infinity) ->
        if now() - since < window do
          # Whatever else this scheduler has to run goes first.
          :erlang.yield()
          wait(window, since)
        else
          wait(window, nil)
        end
    end
  end

  defp now, do: System.monotonic_time(:microsecond)
end
