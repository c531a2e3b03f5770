defmodule Pglite.IdleAnswersTest do
  @moduledoc """
  Nothing that needs no backend waits for one: an idle client's lone Sync (the ping of
  DBConnection, so of every Postgrex and Ecto pool) is answered at once while another
  client holds the backend in a transaction, and a lone Flush or a stray COPY message
  takes no turn. Inside the client's own transaction, or after its own unsynced
  messages, a Sync still goes to the backend. Compared with a PostgreSQL server.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @moduletag timeout: 120_000

  test "a lone Sync from an idle client is answered at once, as from a server, while another client holds a transaction" do
    {:ok, pg} = Pglite.start_link()
    {ours, theirs} = transcripts(pg, "idle_answers")
    assert length(ours) == length(theirs), Enum.join(ours, "\n")

    # Every line as on the server, but that a Query waits for the holder's turn here
    # (README, Limits: transactions take turns).
    for {line, server_line} <- Enum.zip(ours, theirs), not String.starts_with?(line, "a Query from another") do
      assert line == server_line
    end

    assert "lone Sync while another holds a transaction: Z I; at once True" in ours
    assert "40 pings from 8 idle connections: all Z I True; all at once True" in ours
    assert "a Query from another idle client waits its turn: T D C Z I; at once False" in ours
  end
end
