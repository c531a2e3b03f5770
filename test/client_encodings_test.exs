defmodule Pglite.ClientEncodingsTest do
  @moduledoc """
  Every client encoding a server converts to and from works: a client that asks for
  LATIN1, WIN1252, EUC_JP, GB18030... (in its StartupMessage or with SET) sends and
  reads text in it, in results text and binary, parameters, COPY and error messages;
  `convert()` converts between any two; a character the encoding lacks is 22P05. One
  client's encoding never changes what another reads, and a notification reaches each
listener in its own. psycopg, line by line against a
  PostgreSQL server.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @moduletag timeout: 120_000

  test "client encodings other than UTF8 convert as on a server, each client in its own" do
    {:ok, pg} = Pglite.start_link()
    {ours, theirs} = transcripts(pg, "client_encodings")
    assert ours == theirs
    assert Enum.any?(ours, &String.starts_with?(&1, "LATIN1 ['LATIN1', 'café!', 'café!', 4, '636166e9'"))
    assert Enum.any?(ours, &String.starts_with?(&1, "EUC_JP ['EUC_JP', '日本語!', '日本語!', 3, 'c6fccbdcb8ec'"))
    assert "EUC_JP to SJIS: 93fa967b8cea 日本語" in ours
    assert ~s(a reads b's: 22P05 character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in encoding "LATIN1") in ours
    assert "b meanwhile: é,€ utf-8" in ours
    assert ~s(a's own again: "schéma", public ü) in ours
    assert "b's notification from a in LATIN1: ['café']" in ours
    assert "a's from b in UTF8: ['déjà vu']" in ours
    assert "c gets one it cannot read: OperationalError closed True" in ours
    assert "b and a go on: 1 2" in ours
  end
end
