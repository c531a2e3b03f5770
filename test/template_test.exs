defmodule Pglite.TemplateTest do
  @moduledoc """
  An instance per test module: a schema set up once in a template, then instances
  started from it, each its own database, none able to touch the template.
  """
  use ExUnit.Case, async: true

  @moduletag :tmp_dir

  defp migrate(pg) do
    {:ok, _} = Pglite.query(pg, "CREATE TABLE posts (id serial PRIMARY KEY, title text UNIQUE NOT NULL)")
    {:ok, _} = Pglite.query(pg, "INSERT INTO posts (title) SELECT 'seed ' || n FROM generate_series(1, 1000) n")
  end

  defp digest(dir) do
    Path.wildcard(Path.join(dir, "**"), match_dot: true)
    |> Enum.filter(&File.regular?/1)
    |> Enum.map(&{Path.relative_to(&1, dir), :crypto.hash(:sha256, File.read!(&1))})
    |> Enum.sort()
  end

  defp count(pg, sql \\ "SELECT count(*) FROM posts") do
    {:ok, %{rows: [[n]]}} = Pglite.query(pg, sql)
    String.to_integer(n)
  end

  test "instances from one template start with its schema, are independent, and never change it", %{tmp_dir: tmp} do
    {:ok, template} = Pglite.Template.create(Path.join(tmp, "template"), &migrate/1, database: "app_test")
    before = digest(template)

    {micros, instances} =
      :timer.tc(fn ->
        for _ <- 1..4 do
          {:ok, pg} = Pglite.start_link(template: template, database: "app_test")
          pg
        end
      end)

    IO.puts("\ninstances from a template: #{div(micros, 4000)} ms each to start")

    for {pg, i} <- Enum.with_index(instances) do
      assert count(pg) == 1000
      {:ok, _} = Pglite.query(pg, "INSERT INTO posts (title) SELECT 'mine #{i} ' || n FROM generate_series(1, #{i * 10}) n")
      # The unique index came with the template and works.
      assert {:error, %{code: "23505"}} = Pglite.query(pg, "INSERT INTO posts (title) VALUES ('seed 1')")
    end

    for {pg, i} <- Enum.with_index(instances) do
      assert count(pg) == 1000 + i * 10
      assert count(pg, "SELECT count(*) FROM posts WHERE title LIKE 'mine%'") == i * 10
    end

    # While clones read it, no instance can run on the template itself.
    assert {:error, {:data_dir_in_use, _}} = Pglite.start_link(data_dir: template)

    Enum.each(instances, &Pglite.stop/1)
    assert digest(template) == before
  end

  test "a new data directory from a template is a copy that keeps its own writes", %{tmp_dir: tmp} do
    {:ok, template} = Pglite.Template.create(Path.join(tmp, "template"), &migrate/1)
    dir = Path.join(tmp, "copy")
    {:ok, pg} = Pglite.start_link(template: template, data_dir: dir)
    {:ok, _} = Pglite.query(pg, "DELETE FROM posts WHERE id <= 500")
    Pglite.stop(pg)

    {:ok, pg} = Pglite.start_link(data_dir: dir)
    assert count(pg) == 500
    Pglite.stop(pg)

    {:ok, pg} = Pglite.start_link(template: template)
    assert count(pg) == 1000
    Pglite.stop(pg)
  end

  test "a template an instance runs on, or one that was killed, is refused with a reason", %{tmp_dir: tmp} do
    dir = Path.join(tmp, "live")
    {:ok, live} = Pglite.start_link(data_dir: dir)
    assert {:error, {:template_in_use, ^dir}} = Pglite.start_link(template: dir)

    # kill -9 leaves postmaster.pid: a clone could start from a torn state.
    System.cmd("kill", ["-9", to_string(PgliteEx.os_pid(PgliteEx.Instance.backend(live)))])
    Pglite.stop(live)
    assert File.exists?(Path.join(dir, "postmaster.pid"))
    assert {:error, {:template_not_stopped, ^dir}} = Pglite.start_link(template: dir)

    # Started and stopped once, it serves as a template.
    {:ok, pg} = Pglite.start_link(data_dir: dir)
    Pglite.stop(pg)
    {:ok, pg} = Pglite.start_link(template: dir)
    assert {:ok, _} = Pglite.query(pg, "SELECT 1")
    Pglite.stop(pg)
  end

  test "a setup that fails leaves no template behind, and user files are never removed", %{tmp_dir: tmp} do
    path = Path.join(tmp, "template")
    assert {:error, {:setup_raised, "boom"}} = Pglite.Template.create(path, fn _ -> raise "boom" end)
    refute File.exists?(path)

    assert {:error, %{code: "42P01"}} = Pglite.Template.create(path, &Pglite.query(&1, "SELECT * FROM nope"))
    refute File.exists?(path)

    mine = Path.join(tmp, "mine")
    File.mkdir_p!(mine)
    File.write!(Path.join(mine, "notes.txt"), "keep")
    assert {:error, {:not_a_data_dir, ^mine}} = Pglite.Template.create(mine, &migrate/1)
    assert File.read!(Path.join(mine, "notes.txt")) == "keep"
  end
end
