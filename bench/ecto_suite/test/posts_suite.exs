# 40 async modules of 10 tests, each doing what a Phoenix app's tests do: inserts
# through changesets, a unique constraint error (Postgrex's savepoint mode), preloads,
# an Ecto.Multi, an upsert, Repo.stream in a transaction, aggregates.
for m <- 1..40 do
  defmodule Module.concat(EctoSuite, "Posts#{m}Test") do
    use EctoSuite.DataCase, async: true

    @module m

    for t <- 1..10 do
      test "posts and comments #{t}" do
        title = "post #{@module}-#{unquote(t)}"
        {:ok, post} = Repo.insert(Post.changeset(%Post{}, %{title: title}))
        assert {:error, changeset} = Repo.insert(Post.changeset(%Post{}, %{title: title}))
        assert {"has already been taken", _} = changeset.errors[:title]
        Repo.insert_all(Comment, for(i <- 1..5, do: %{body: "comment #{i}", post_id: post.id}))
        assert [%Post{comments: comments}] = Repo.all(from(p in Post, where: p.title == ^title, preload: :comments))
        assert length(comments) == 5

        {:ok, %{second: second}} =
          Ecto.Multi.new()
          |> Ecto.Multi.insert(:second, Post.changeset(%Post{}, %{title: title <> " again"}))
          |> Ecto.Multi.update_all(:bodies, from(c in Comment, where: c.post_id == ^post.id), set: [body: "edited"])
          |> Repo.transaction()

        now = NaiveDateTime.utc_now() |> NaiveDateTime.truncate(:second)
        Repo.insert_all(Post, [%{title: title, inserted_at: now, updated_at: now}], on_conflict: :nothing, conflict_target: :title)
        assert Repo.aggregate(from(p in Post, where: p.id in ^[post.id, second.id]), :count) == 2
        assert {:ok, 5} = Repo.transaction(fn -> Repo.stream(from(c in Comment, where: c.body == "edited")) |> Enum.count() end)
      end
    end
  end
end
