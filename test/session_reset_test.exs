defmodule Pglite.SessionResetTest do
  @moduledoc """
  `DEALLOCATE ALL` and `DISCARD ALL` act on the session of the client that sends
  them, as on a server where each client has its own: another client's prepared
  statements (protocol and SQL), TEMP tables, holdable cursors, settings and LISTEN
  channels are untouched, and the sender gets the server's command tags and errors;
  `RESET ALL` puts back what the client's StartupMessage asked for. In a simple Query
  and through the extended protocol alike; `DEALLOCATE ALL` among other statements or
  in a pipeline too.
  psycopg, line by line against a PostgreSQL server.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @moduletag timeout: 120_000

  test "DEALLOCATE ALL, DISCARD ALL and RESET ALL from one client leave every other client's session as it was, as on a server" do
    {:ok, pg} = Pglite.start_link()
    {ours, theirs} = transcripts(pg, "session_reset")
    assert ours == theirs
    assert "DEALLOCATE ALL: DEALLOCATE ALL" in ours
    assert "a's SQL statement after it: 26000" in ours
    assert "b after a's DISCARD ALL: [1, 2, 0, 2, '7MB']" in ours
    assert "b still listens: ['after']" in ours
    assert "DISCARD ALL in a transaction: 25001" in ours
    assert "RESET ALL: RESET 5MB ISO, DMY" in ours
    assert "RESET work_mem: RESET 5MB" in ours
    assert "extended DEALLOCATE ALL 1 DEALLOCATE ALL" in ours
    assert "b after a's extended ones: [1, 2, 0, '7MB']" in ours
    assert "after RESET ALL among others: 5MB ISO, DMY" in ours
    assert "DEALLOCATE ALL among others: ['SELECT 1', 'DEALLOCATE ALL', 'SELECT 1', 'DEALLOCATE ALL']" in ours
    assert "b's after it: 2" in ours
    assert "d's after it: 42" in ours
    assert "DEALLOCATE ALL in a pipeline: 1 DEALLOCATE ALL 2" in ours
    assert "d's after the pipeline: 42" in ours
  end
end
