defmodule Pglite.PsqlTest do
  @moduledoc "psql, over the Unix socket and over TCP, like against any PostgreSQL server."
  use ExUnit.Case, async: true
  import Pglite.TestClients

  setup do
    {:ok, pg} = Pglite.start_link(tcp_port: 0)
    on_exit(fn -> :ok end)
    %{pg: pg}
  end

  test "DDL, DML, an error and a transaction over the Unix socket", %{pg: pg} do
    assert {_, 0} = psql(pg, "CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL)")
    assert {"3\n", 0} = psql(pg, "INSERT INTO people (name) VALUES ('ada'), ('grace'), ('edsger'); SELECT count(*) FROM people")
    assert {out, 1} = psql(pg, "INSERT INTO people (name) VALUES (NULL)")
    assert out =~ "violates not-null constraint"
    assert {_, 0} = psql(pg, "BEGIN; UPDATE people SET name = 'x'; ROLLBACK")
    assert {"ada,edsger,grace\n", 0} = psql(pg, "SELECT string_agg(name, ',' ORDER BY name) FROM people")
    assert {_, 0} = psql(pg, "BEGIN; DELETE FROM people WHERE name = 'ada'; COMMIT")
    assert {"2\n", 0} = psql(pg, "SELECT count(*) FROM people")
  end

  test "TCP on 127.0.0.1 serves the same database", %{pg: pg} do
    port = Pglite.tcp_port(pg)
    assert is_integer(port) and port > 0
    assert {_, 0} = psql(pg, "CREATE TABLE over_tcp (v int); INSERT INTO over_tcp VALUES (7)", host: "127.0.0.1", port: port)
    assert {"7\n", 0} = psql(pg, "SELECT v FROM over_tcp")
  end

  test "wrong password, user or database is refused", %{pg: pg} do
    assert {out, 2} = psql(pg, "SELECT 1", password: "wrong")
    assert out =~ "password authentication failed"
    assert {out, 2} = psql(pg, "SELECT 1", user: "mallory")
    assert out =~ ~s(role "mallory" cannot log in here: this pglite instance accepts only role "postgres")
    assert {out, 2} = psql(pg, "SELECT 1", database: "nosuch")
    assert out =~ ~s(database "nosuch" does not exist)
    assert {"1\n", 0} = psql(pg, "SELECT 1"), "the instance is unharmed"
  end

  test "a role created in SQL exists, but clients log in as the instance's own", %{pg: pg} do
    assert {_, 0} = psql(pg, "CREATE ROLE bob LOGIN PASSWORD 'pw'")
    assert {out, 2} = psql(pg, "SELECT 1", user: "bob", password: "pw")
    assert out =~ ~s(role "bob" cannot log in here)
    assert {"bob\n", 0} = psql(pg, "SET ROLE bob; SELECT current_user"), "SET ROLE reaches it"
  end

  test "psql with PGCLIENTENCODING=LATIN1 reads and writes LATIN1, as from a server", %{pg: pg} do
    env = [{"PGCLIENTENCODING", "LATIN1"}]
    assert {"LATIN1\n" <> <<0xE9, ?\n>>, 0} =
             psql(pg, "SHOW client_encoding; SELECT convert_from('\\xc3a9', 'UTF8')", env: env)
    assert {out, 1} = psql(pg, "SELECT convert_from('\\xe282ac', 'UTF8')", env: env)
    assert out =~ ~s(ERROR:  character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in encoding "LATIN1")
    assert {"UTF8\n", 0} = psql(pg, "SHOW client_encoding", env: [{"PGCLIENTENCODING", "UTF8"}]), "the next client has its own"
  end

  test "a client speaking garbage is closed alone", %{pg: pg} do
    c = Pglite.get_connection_opts(pg)
    {:ok, s} = :gen_tcp.connect({:local, String.to_charlist(Path.join(c[:socket_dir], ".s.PGSQL.#{c[:port]}"))}, 0, [:binary, active: false])
    :ok = :gen_tcp.send(s, <<0, 0, 0, 8, 1, 2, 3, 4>>)
    assert {:ok, <<?E, _::binary>> = reply} = :gen_tcp.recv(s, 0, 5_000)
    assert reply =~ "0A000"
    assert {:error, :closed} = :gen_tcp.recv(s, 0, 5_000)
    assert {"1\n", 0} = psql(pg, "SELECT 1")
  end
end
