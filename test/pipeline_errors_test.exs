defmodule Pglite.PipelineErrorsTest do
  @moduledoc """
  A failed statement inside a pipelined extended-protocol sequence (Postgrex's savepoint
  mode, so every Ecto Sandbox test that hits a constraint error; psycopg pipelines)
  ends its client's turn exactly where a server is ready for that client again: the
  client gets what a server sends it, and the next client is answered at once.
  """
  use ExUnit.Case, async: true
  import ExUnit.CaptureLog
  import Pglite.TestClients

  @moduletag timeout: 180_000

  test "an error in each position of a pipeline: the same replies as a server, and the other client is answered at once" do
    {:ok, pg} = Pglite.start_link()
    {ours, status} = python(pg, "pipeline_errors")
    assert status == 0, ours

    {theirs, 0} = python_on_a_server("pipeline_errors")

    # psycopg may also print a warning when it collects a pipeline: compare the cases.
    ours = cases(ours)
    assert length(ours) == 20
    assert ours == cases(theirs)
    for line <- ours, do: assert(line =~ "other client answered at once", line)
  end

  test "the reply to a request pipelined ahead of a slow one comes at once, as from a server" do
    {:ok, pg} = Pglite.start_link()
    {ours, 0} = python(pg, "pipelined_replies")
    {theirs, 0} = python_on_a_server("pipelined_replies")
    assert ours == theirs
    assert ours =~ "simple: first reply alone\nextended: first reply alone"
  end

  test "a wedge (the backend idle while the front end still expects the holder's replies) is logged with the turn's messages, and its client is let go" do
    {:ok, pg} = Pglite.start_link()
    backend = PgliteEx.Instance.backend(pg)

    log =
      capture_log(fn ->
        {holder, _os_pid} = open_psql(pg)
        Port.command(holder, "BEGIN;\nSELECT pg_sleep(1);\n")
        wait_until(fn -> match?(%{holder: {:client, _}, status: ?T}, :sys.get_state(backend).arbiter) end)

        # Force the situation: the front end believes a Query more is owed than was sent.
        :sys.replace_state(backend, fn %{arbiter: a} = state -> %{state | arbiter: %{a | in_flight: PgliteEx.InFlight.sent(a.in_flight, ~c"Q")}} end)

        # Without the wedge check this client would wait for ever: the holder owes a
        # reply, so the idle-in-transaction timeout does not apply to it either.
        assert {"other\n", 0} = psql(pg, "SELECT 'other'")
        Port.command(holder, "SELECT 'holder';\n")
        assert await_output(holder, "internal error in the pglite front end") =~ "FATAL"
      end)

    assert log =~ ~r/wedge: the backend is idle but client \d+'s turn still expects replies/
    assert log =~ "oldest first: sent:Q"
  end

  defp cases(output), do: output |> String.split("\n", trim: true) |> Enum.filter(&(&1 =~ "other client"))

  defp wait_until(fun, tries \\ 100) do
    cond do
      fun.() -> :ok
      tries == 0 -> flunk("condition never held")
      true -> Process.sleep(20) && wait_until(fun, tries - 1)
    end
  end
end
