defmodule EctoCheck.Repo.Migrations.CreatePosts do
  use Ecto.Migration

  def change do
    create table(:posts) do
      add :title, :string, null: false
      timestamps()
    end

    create unique_index(:posts, [:title])
  end
end
