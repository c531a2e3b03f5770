defmodule Pglite.ApiTest do
  @moduledoc "The public API: start_link, query, health_check, options, errors, stop."
  use ExUnit.Case, async: true

  test "an in-memory instance answers queries without any client library" do
    {:ok, pg} = Pglite.start_link()
    assert :ok = Pglite.health_check(pg)
    assert {:ok, %{columns: ["n", "s"], rows: [["42", nil]], command: "SELECT 1"}} = Pglite.query(pg, "SELECT 41 + 1 AS n, NULL AS s")
    assert {:ok, %{command: "CREATE TABLE"}} = Pglite.query(pg, "CREATE TABLE t (id int)")
    assert {:ok, %{command: "INSERT 0 3"}} = Pglite.query(pg, "INSERT INTO t VALUES (1), (2), (3)")
    assert {:ok, %{rows: [["1"], ["2"], ["3"]]}} = Pglite.query(pg, "SELECT id FROM t ORDER BY id")
    assert {:error, %{code: "42P01", severity: "ERROR"}} = Pglite.query(pg, "SELECT * FROM missing")
    assert :ok = Pglite.health_check(pg), "healthy after an error"
    assert :ok = Pglite.stop(pg)
  end

  test "a transaction left open by query/2 is rolled back" do
    {:ok, pg} = Pglite.start_link()
    {:ok, _} = Pglite.query(pg, "CREATE TABLE t (id int)")
    {:ok, _} = Pglite.query(pg, "BEGIN; INSERT INTO t VALUES (1)")
    assert {:ok, %{rows: [["0"]]}} = Pglite.query(pg, "SELECT count(*) FROM t")
    Pglite.stop(pg)
  end

  test "connection options are exactly what Postgrex and Ecto take" do
    {:ok, pg} = Pglite.start_link(database: "app", username: "app_user", password: "s3cret")
    opts = Pglite.get_connection_opts(pg)
    assert Keyword.keys(opts) == [:socket_dir, :port, :database, :username, :password]
    assert opts[:database] == "app" and opts[:username] == "app_user" and opts[:password] == "s3cret"
    assert File.exists?(Path.join(opts[:socket_dir], ".s.PGSQL.#{opts[:port]}"))
    assert %File.Stat{mode: mode} = File.stat!(opts[:socket_dir])
    assert Bitwise.band(mode, 0o777) == 0o700
    assert {:ok, %{rows: [["app", "app_user"]]}} = Pglite.query(pg, "SELECT current_database(), current_user")
    Pglite.stop(pg)
    refute File.exists?(opts[:socket_dir]), "the socket directory is removed on stop"
  end

  test "options are validated before anything starts" do
    assert {:error, {:invalid_option, :colour}} = Pglite.start_link(colour: "blue")
    assert {:error, {:invalid_option, {:timeout, -1}}} = Pglite.start_link(timeout: -1)
    assert {:error, {:invalid_option, {:tcp_port, 70_000}}} = Pglite.start_link(tcp_port: 70_000)
    assert {:error, {:invalid_option, {:memory, false}}} = Pglite.start_link(memory: false)
    assert {:error, {:invalid_option, {:database, ""}}} = Pglite.start_link(database: "")
    assert {:error, {:invalid_option, "nope"}} = Pglite.start_link("nope")
  end

  test "start-up failures come back as readable errors" do
    assert {:error, :port_executable_not_found} = Pglite.start_link(port_executable: "/no/such/pglite-port")

    assert {:error, {:port_exited, 1, tail}} =
             Pglite.start_link(env: [{"PGLITE_DATA_DIR", "s3://nowhere"}])

    assert tail =~ "only memory:// and file:// are supported"
    assert {:error, :startup_timeout} = Pglite.start_link(timeout: 1)
  end

  test "an instance in a supervision tree, under a name" do
    {:ok, sup} = Supervisor.start_link([{Pglite, name: :api_test_db}], strategy: :one_for_one)
    assert :ok = Pglite.health_check(:api_test_db)
    Supervisor.stop(sup)
  end
end
