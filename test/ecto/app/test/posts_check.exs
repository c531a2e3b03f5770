# Four async modules of Sandbox tests as a Phoenix app has them: each query runs in
# savepoint mode, and each test hits a unique constraint error.
for n <- 1..4 do
  defmodule Module.concat(EctoCheck, "Posts#{n}Test") do
    use ExUnit.Case, async: true
    alias EctoCheck.{Comment, Post, Repo}
    import Ecto.Query

    @module n

    setup do
      pid = Ecto.Adapters.SQL.Sandbox.start_owner!(Repo, shared: false)
      on_exit(fn -> Ecto.Adapters.SQL.Sandbox.stop_owner(pid) end)
    end

    for t <- 1..5 do
      test "insert, a unique constraint error as a changeset error, then more work (#{t})" do
        title = "post #{@module}-#{unquote(t)}"
        {:ok, post} = Repo.insert(Post.changeset(%Post{}, %{title: title}))
        assert {:error, changeset} = Repo.insert(Post.changeset(%Post{}, %{title: title}))
        assert {"has already been taken", _} = changeset.errors[:title]
        Repo.insert!(%Comment{body: "hi", post_id: post.id})
        assert [%Post{comments: [%Comment{body: "hi"}]}] = Repo.all(from(p in Post, where: p.title == ^title, preload: :comments))
        assert {:ok, 1} = Repo.transaction(fn -> Repo.stream(from(p in Post, select: p.id)) |> Enum.count() end)
      end
    end
  end
end
