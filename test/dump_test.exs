defmodule Pglite.DumpTest do
  @moduledoc """
  pg_dump out, psql in: PostgreSQL 17's own pg_dump (bundled, run by the port) writes a
  plain-SQL dump that Debian's PostgreSQL server loads with psql, table for table.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients
  alias Pglite.NativeServer

  @moduletag timeout: 180_000

  @schema """
  CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL UNIQUE, born date);
  CREATE TABLE books (id bigserial PRIMARY KEY, author_id int REFERENCES authors, title text, price numeric(8,2), tags text[], cover bytea, meta jsonb);
  CREATE INDEX books_title ON books (lower(title));
  CREATE SEQUENCE tickets START 1000 INCREMENT 7;
  CREATE VIEW cheap_books AS SELECT title, price FROM books WHERE price < 10;
  CREATE FUNCTION price_with_tax(numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT round($1 * 1.2, 2)';
  INSERT INTO authors (name, born) SELECT 'author ' || g, date '1900-01-01' + g * 100 FROM generate_series(1, 50) g;
  INSERT INTO books (author_id, title, price, tags, cover, meta)
    SELECT 1 + g % 50, 'Book "' || g || E'"\\nline two, it''s', (g % 300) / 7.0, ARRAY['t' || g % 3, NULL], decode(md5(g::text), 'hex'),
           jsonb_build_object('n', g, 'odd', g % 2 = 1)
    FROM generate_series(1, 2000) g;
  INSERT INTO books (author_id, title) VALUES (NULL, NULL);
  SELECT nextval('tickets'), nextval('tickets');
  """

  @checks [
    {"authors", "SELECT count(*) || ':' || md5(string_agg(a::text, ',' ORDER BY a.id)) FROM authors a"},
    {"books", "SELECT count(*) || ':' || md5(string_agg(b::text, ',' ORDER BY b.id)) FROM books b"},
    {"view", "SELECT count(*) || ':' || md5(string_agg(v::text, ',' ORDER BY v::text)) FROM cheap_books v"},
    {"function", "SELECT price_with_tax(10.00)"},
    {"sequences", "SELECT nextval('tickets') || ',' || nextval('authors_id_seq') || ',' || nextval('books_id_seq')"},
    {"index", "SELECT indexdef FROM pg_indexes WHERE indexname = 'books_title'"}
  ]

  @tag :tmp_dir
  test "Pglite.dump/2 writes a dump that PostgreSQL 15 loads with psql: same rows, same checksums", %{tmp_dir: tmp} do
    {:ok, pg} = Pglite.start_link()
    {_, 0} = psql(pg, @schema)
    path = Path.join(tmp, "dump.sql")
    assert :ok = Pglite.dump(pg, path)
    assert File.read!(path) =~ "-- Dumped by pg_dump version 17"
    expected = for {name, sql} <- @checks, into: %{}, do: {name, elem(psql(pg, sql), 0)}
    assert expected["books"] =~ ~r/^2001:[0-9a-f]{32}\n$/
    assert expected["sequences"] == "1014,51,2002\n"

    server = NativeServer.start()

    try do
      {_, 0} = NativeServer.psql(server, "postgres", ["-c", "CREATE DATABASE restored"])
      # pg_dump 17 sets transaction_timeout, which 15 does not know: that one line fails.
      {out, 0} = NativeServer.psql(server, "restored", ["-f", path])
      assert out |> String.split("\n") |> Enum.filter(&(&1 =~ "ERROR")) |> Enum.reject(&(&1 =~ "transaction_timeout")) == []

      for {name, sql} <- @checks do
        assert {expected[name], 0} == NativeServer.psql(server, "restored", ["-c", sql]), "#{name} differs"
      end
    after
      NativeServer.stop(server)
    end
  end

  @tag :tmp_dir
  test "mix pglite.dump dumps a data directory; a missing directory or an unwritable file is a clear error", %{tmp_dir: tmp} do
    dir = Path.join(tmp, "db")
    {:ok, pg} = Pglite.start_link(data_dir: dir)
    {:ok, _} = Pglite.query(pg, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
    assert {:error, {:pg_dump_failed, 1, message}} = Pglite.dump(pg, Path.join(tmp, "no/such/dir/x.sql"))
    assert message =~ "cannot write the dump into"
    Pglite.stop(pg)

    out_file = Path.join(tmp, "kept.sql")
    {out, 0} = mix(["pglite.dump", "--data-dir", dir, "--file", out_file])
    assert out =~ "wrote #{out_file}"
    assert File.read!(out_file) =~ "COPY public.kept (v) FROM stdin;\n42\n"

    {out, status} = mix(["pglite.dump", "--data-dir", Path.join(tmp, "missing"), "--file", out_file])
    assert status != 0
    assert out =~ "there is no data directory at"
    refute File.exists?(Path.join(tmp, "missing")), "nothing is created"
  end

  defp mix(args), do: System.cmd("mix", args, stderr_to_stdout: true, env: [{"MIX_ENV", "test"}])
end
