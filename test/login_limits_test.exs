defmodule Pglite.LoginLimitsTest do
  @moduledoc """
  A client that does not log in holds nothing for long: after `authentication_timeout`
  it is closed with FATAL 57014, as by a server, and logged-in clients are untouched.
  """
  use ExUnit.Case, async: true

  defp connect(pg) do
    c = Pglite.get_connection_opts(pg)
    path = Path.join(c[:socket_dir], ".s.PGSQL.#{c[:port]}")
    {:ok, s} = :gen_tcp.connect({:local, String.to_charlist(path)}, 0, [:binary, active: false])
    s
  end

  defp fatal_code(s) do
    case :gen_tcp.recv(s, 0, 5_000) do
      {:ok, <<?E, _len::32, fields::binary>>} -> fields |> :binary.split(<<0>>, [:global]) |> Enum.find_value(&match?("C" <> _, &1) && binary_part(&1, 1, 5))
      other -> other
    end
  end

  test "a start-up packet of impossible length is closed without a word, as a server does" do
    {:ok, pg} = Pglite.start_link([])
    # Terminate before any start-up packet: node-postgres's connect() then end().
    terminate_first = connect(pg)
    :ok = :gen_tcp.send(terminate_first, <<?X, 4::32>>)
    assert {:error, :closed} = :gen_tcp.recv(terminate_first, 0, 5_000)
    huge = connect(pg)
    :ok = :gen_tcp.send(huge, <<100_000_000::32, 196_608::32>>)
    assert {:error, :closed} = :gen_tcp.recv(huge, 0, 5_000)
    assert {"1\n", 0} = Pglite.TestClients.psql(pg, "SELECT 1")
  end

  test "a client that does not finish logging in within authentication_timeout is closed with 57014, alone" do
    {:ok, pg} = Pglite.start_link(authentication_timeout: 500)
    silent = connect(pg)
    # A start-up packet, then silence where the SCRAM response should be.
    user = Pglite.get_connection_opts(pg)[:username]
    params = "user\0#{user}\0\0"
    half = connect(pg)
    :ok = :gen_tcp.send(half, <<byte_size(params) + 8::32, 196_608::32, params::binary>>)
    {:ok, <<?R, _::binary>>} = :gen_tcp.recv(half, 0, 5_000)

    assert fatal_code(silent) == "57014"
    assert fatal_code(half) == "57014"
    assert {:error, :closed} = :gen_tcp.recv(silent, 0, 5_000)

    # Logged in well after the timeout: not closed.
    {out, 0} = Pglite.TestClients.psql(pg, "SELECT pg_sleep(1); SELECT 'still here'")
    assert out =~ "still here"
  end
end
