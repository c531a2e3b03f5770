defmodule PgliteEx.Turns do
  @moduledoc """
  Who goes next when the shared backend is free: the decision at the heart of the
  arbiter, as a pure function of the arbiter's state. `PgliteEx` (the process) keeps
  the line and performs what this decides (writes to the port, replies, timers).

  The order:

    1. Chores first: the front end's own work between turns (cleaning up after a
       client that left, capturing a session's settings, closing statements).
    2. Then, if the backend is still inside a transaction that a chore could not end
       (its ROLLBACK canceled), one ROLLBACK; only one until the next client's turn,
       since retrying a ROLLBACK that keeps failing served nobody (seen in a fuzz run).
    3. Then the line, first come first served. A client whose session settings are
       not the backend's now gets them applied first (a chore), then its turn; a new
       client's settings are checked (`:register`); `Pglite.query/2` runs with the
       server's defaults.
  """

  @typedoc "A settings map (`PgliteEx.SessionState`), or `:unknown` after a failed restore."
  @type settings :: map() | :unknown

  @typedoc "What waits in line."
  @type item ::
          {:submit, GenServer.from(), iodata(), map(), PgliteEx.Arbiter.timer() | nil}
          | {:register, GenServer.from(), pid()}
          | {:query, GenServer.from(), String.t()}

  @typedoc "The chores this decides on (others come from `PgliteEx`'s own list)."
  @type chore ::
          {:apply, settings(), pid() | nil}
          | {:register, GenServer.from(), pid()}
          | {:query, GenServer.from(), String.t()}
          | :rollback
          | term()

  @typedoc "The parts of the arbiter's state the decision reads."
  @type line :: %{
          required(:chores) => [chore()],
          required(:queue) => :queue.queue(item()),
          required(:status) => byte(),
          required(:rollback_tried) => boolean(),
          required(:applied) => settings(),
          optional(atom()) => term()
        }

  @typedoc """
  `:wait` (nothing to do), a chore to run, or a client's turn; with the fields of the
  line that change (`:chores`, `:queue`, `:rollback_tried`).
  """
  @type decision :: :wait | {:chore, chore(), map()} | {:turn, item(), map()}

  @doc """
  Decides what the free backend does next. `settings_of` gives a client's session
  settings (`%{}` for none); `alive?` says whether there is a port to write to.
  """
  @spec next(line(), (pid() -> settings()), boolean()) :: decision()
  def next(line, settings_of, alive? \\ true)

  def next(%{chores: [chore | chores]}, _settings_of, _alive?), do: {:chore, chore, %{chores: chores}}

  def next(%{status: status, rollback_tried: false} = line, _settings_of, true) when status != ?I do
    if :queue.is_empty(line.queue), do: :wait, else: {:chore, :rollback, %{rollback_tried: true}}
  end

  def next(line, settings_of, _alive?) do
    case :queue.out(line.queue) do
      {:empty, _} ->
        :wait

      {{:value, {:submit, {pid, _}, _, _, _} = item}, queue} ->
        settings = settings_of.(pid)
        if settings == line.applied, do: {:turn, item, %{queue: queue}}, else: {:chore, {:apply, settings, pid}, %{}}

      {{:value, {:register, from, pid}}, queue} ->
        {:chore, {:register, from, pid}, %{queue: queue}}

      {{:value, {:query, from, sql}}, queue} ->
        if line.applied == %{}, do: {:chore, {:query, from, sql}, %{queue: queue}}, else: {:chore, {:apply, %{}, nil}, %{}}
    end
  end
end
