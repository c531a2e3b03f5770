# What an app does besides inserts: Ecto.Multi, upserts, schema prefixes, a query with
# 2,000 parameters, the database it runs in.
defmodule EctoCheck.WorkflowTest do
  use ExUnit.Case, async: true
  alias EctoCheck.{AuditEvent, Post, Repo}
  import Ecto.Query

  setup do
    pid = Ecto.Adapters.SQL.Sandbox.start_owner!(Repo, shared: false)
    on_exit(fn -> Ecto.Adapters.SQL.Sandbox.stop_owner(pid) end)
  end

  test "the repo's own database is served" do
    assert %{rows: [["ecto_check_test"]]} = Repo.query!("SELECT current_database()")
  end

  test "Ecto.Multi commits together, and a failed step rolls back every step" do
    multi = Ecto.Multi.new() |> Ecto.Multi.insert(:a, %Post{title: "multi a"}) |> Ecto.Multi.insert(:b, %Post{title: "multi b"})
    assert {:ok, %{a: _, b: _}} = Repo.transaction(multi)

    failing =
      Ecto.Multi.new()
      |> Ecto.Multi.insert(:c, %Post{title: "multi c"})
      |> Ecto.Multi.insert(:dup, Post.changeset(%Post{}, %{title: "multi a"}))

    assert {:error, :dup, changeset, %{c: _}} = Repo.transaction(failing)
    assert {"has already been taken", _} = changeset.errors[:title]
    assert ["multi a", "multi b"] = Repo.all(from(p in Post, where: like(p.title, "multi %"), select: p.title, order_by: p.title))
  end

  test "upserts with on_conflict in a schema prefix" do
    for _ <- 1..3 do
      Repo.insert!(%AuditEvent{name: "login", count: 1},
        on_conflict: [inc: [count: 1]],
        conflict_target: :name
      )
    end

    assert [%AuditEvent{name: "login", count: 3}] = Repo.all(AuditEvent)
    assert [3] = Repo.all(from(e in "events", prefix: "audit", select: e.count))
  end

  test "Repo.query! with 2,000 parameters" do
    params = Enum.to_list(1..2_000)
    placeholders = Enum.map_join(1..2_000, ", ", &"($#{&1}::int)")
    assert %{rows: [[2_001_000]]} = Repo.query!("SELECT sum(v)::int FROM (VALUES #{placeholders}) AS t(v)", params)
  end
end
