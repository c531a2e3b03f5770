defmodule Pglite.BinaryInetTest do
  @moduledoc """
  inet and cidr in the binary format carry the address family byte a server sends (2
  for IPv4, 3 for IPv6), in results, parameters and binary COPY, so Postgrex (always
  binary for these types), psycopg and node `pg` read and write addresses as on a
  server. Compared with a PostgreSQL server, byte for byte.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @moduletag timeout: 120_000

  test "binary inet and cidr are the server's bytes both ways (psycopg, raw protocol, binary COPY)" do
    {:ok, pg} = Pglite.start_link()
    {ours, theirs} = transcripts(pg, "binary_inet")
    assert ours == theirs
    assert "binary result 1.2.3.4/32: IPv4Address('1.2.3.4') IPv4Network('1.2.3.4/32') 0220000401020304" in ours
    assert ~s(raw binary parameter with family byte 1: ['22P03 invalid address family in external "inet" value']) in ours
  end

  test "node-postgres in binary mode gets the server's inet and cidr bytes" do
    {:ok, pg} = Pglite.start_link()
    {ours, status} = node(pg, "binary_inet")
    assert status == 0, ours
    {theirs, 0} = node_on_a_server("binary_inet")
    assert ours == theirs
    assert ours =~ "1.2.3.4/32 binary 0220000401020304"
  end
end
