defmodule Pglite.RefusedMessagesTest do
  @moduledoc """
  A message a server refuses from a connection (a password message after
  authentication, a message over the small-message limit, a malformed one, a Query
  during COPY FROM STDIN) never reaches the shared backend: its sender alone gets the
  server's error and is closed; the other clients and the data are untouched.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @moduletag timeout: 180_000

  test "a message a server refuses (password after authentication, too long, malformed, a Query during COPY) closes its sender alone, with the server's error" do
    {:ok, pg} = Pglite.start_link()
    {ours, theirs} = transcripts(pg, "refused_messages")
    assert length(ours) == 12, Enum.join(ours, "\n")
    assert "huge password message: FATAL 08P01 closed" in ours

    # The same words as the server, the connection closed, the canary untouched.
    for prefix <- ["password message", "unknown message type", "COPY started", "Query during COPY", "Query pipelined", "canary still works"] do
      assert Enum.find(ours, &String.starts_with?(&1, prefix)) == Enum.find(theirs, &String.starts_with?(&1, prefix))
    end

    # A server closes a too-long message's connection without a word (it logs why), and
    # answers a Sync or Flush with a body with an ERROR and goes on: here the connection
    # is closed with a FATAL that says why (README, Limits).
    for prefix <- ["Describe longer", "Execute longer", "Sync with a body", "Flush with a body"] do
      assert Enum.find(ours, &String.starts_with?(&1, prefix)) =~ ": FATAL 08P01 closed; canary 1"
    end

    # Only the COPY that ended in its own write added a row.
    assert {"2\n", 0} = psql(pg, "SELECT count(*) FROM kept")
  end
end
