defmodule PgliteEx.TurnsTest do
  @moduledoc """
  Who goes next when the backend is free, without a port: chores first, one ROLLBACK
  when a transaction was left open, then the line in arrival order, each client with
  its own settings in place. Then random lines, played out to the end: every client in
  line gets its turn, in order, never with another client's settings, and the backend
  never idles while someone waits.
  """
  use ExUnit.Case, async: true
  alias PgliteEx.Turns

  defp line(items, extra \\ %{}),
    do: Map.merge(%{chores: [], queue: :queue.from_list(items), status: ?I, rollback_tried: false, applied: %{}}, extra)

  defp submit(pid, tag \\ nil), do: {:submit, {pid, make_ref()}, tag, %{}, nil}
  defp none(_pid), do: %{}

  test "chores go before the line" do
    assert {:chore, {:sql, "UNLISTEN x"}, %{chores: []}} = Turns.next(line([submit(self())], %{chores: [{:sql, "UNLISTEN x"}]}), &none/1)
  end

  test "a free backend with nobody in line waits" do
    assert :wait = Turns.next(line([]), &none/1)
    assert :wait = Turns.next(line([], %{status: ?E}), &none/1)
  end

  test "a transaction left open gets one ROLLBACK before the next turn, only one" do
    waiting = submit(self())
    assert {:chore, :rollback, %{rollback_tried: true}} = Turns.next(line([waiting], %{status: ?E}), &none/1)
    assert {:turn, ^waiting, _} = Turns.next(line([waiting], %{status: ?E, rollback_tried: true}), &none/1)
    # Without a port there is nothing to roll back.
    assert {:turn, ^waiting, _} = Turns.next(line([waiting], %{status: ?T}), &none/1, false)
  end

  test "a client's settings are put in place before its turn" do
    pid = self()
    mine = %{"search_path" => "app"}
    waiting = submit(pid)
    assert {:chore, {:apply, ^mine, ^pid}, changes} = Turns.next(line([waiting]), fn ^pid -> mine end)
    assert changes == %{}, "the client keeps its place"
    assert {:turn, ^waiting, %{queue: queue}} = Turns.next(line([waiting], %{applied: mine}), fn ^pid -> mine end)
    assert :queue.is_empty(queue)
  end

  test "registrations and Pglite.query/2 are chores; a query runs with the server's defaults" do
    from = {self(), make_ref()}
    assert {:chore, {:register, ^from, _}, _} = Turns.next(line([{:register, from, self()}]), &none/1)
    assert {:chore, {:query, ^from, "SELECT 1"}, _} = Turns.next(line([{:query, from, "SELECT 1"}]), &none/1)
    assert {:chore, {:apply, %{}, nil}, %{}} = Turns.next(line([{:query, from, "SELECT 1"}], %{applied: %{"a" => "b"}}), &none/1)
  end

  # A model of the arbiter around the decision: a chore is done at once (an :apply
  # puts its settings in place; a ROLLBACK ends the transaction, or is canceled and
  # leaves it); a turn is taken and may leave a transaction open.
  defp play(line, settings, turns \\ [], steps \\ 0) do
    waiting? = line.chores != [] or not :queue.is_empty(line.queue)

    case Turns.next(line, &Map.fetch!(settings, &1)) do
      :wait ->
        refute waiting?, "nobody may wait while the backend is free"
        {Enum.reverse(turns), steps}

      {:chore, chore, changes} ->
        line = Map.merge(line, changes)

        line =
          case chore do
            {:apply, applied, _} -> %{line | applied: applied}
            :rollback -> %{line | status: Enum.random([?I, line.status])}
            _ -> line
          end

        play(line, settings, turns, steps + 1)

      {:turn, {:submit, {pid, _}, tag, _, _}, changes} ->
        assert Map.fetch!(settings, pid) == line.applied, "a turn runs with its client's settings"
        line = %{Map.merge(line, changes) | status: Enum.random([?I, ?I, ?T, ?E]), rollback_tried: false}
        play(line, settings, [tag | turns], steps + 1)
    end
  end

  test "random lines played out: every client gets its turn, in order, with its own settings" do
    for seed <- 1..500 do
      :rand.seed(:exsss, {seed, seed, seed})
      clients = for _ <- 1..Enum.random(1..5), do: spawn(fn -> :ok end)
      settings = Map.new(clients, &{&1, Enum.random([%{}, %{"search_path" => "a"}, %{"TimeZone" => "UTC"}])})
      submits = for n <- 1..Enum.random(0..12), do: submit(Enum.random(clients), n)
      others = for _ <- 1..Enum.random(0..3), do: {:register, {self(), make_ref()}, Enum.random(clients)}
      items = Enum.shuffle(submits ++ others)
      start = line(items, %{chores: Enum.take([{:sql, "x"}, {:close, []}], Enum.random(0..2)), status: Enum.random([?I, ?E]), applied: Enum.random([%{}, :unknown])})

      {turns, steps} = play(start, settings)
      assert turns == for({:submit, _, n, _, _} <- items, do: n), "seed #{seed}: every submit gets its turn, in arrival order"
      # Each client in line costs at most a settings chore, a ROLLBACK and its turn.
      assert steps <= 3 * length(items) + 3, "seed #{seed}: #{steps} steps"
    end
  end
end
