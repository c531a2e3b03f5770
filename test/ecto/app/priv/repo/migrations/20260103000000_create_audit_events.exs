defmodule EctoCheck.Repo.Migrations.CreateAuditEvents do
  use Ecto.Migration

  # A table in a schema of its own, created with `prefix:`.
  def change do
    execute "CREATE SCHEMA audit", "DROP SCHEMA audit"

    create table(:events, prefix: "audit") do
      add :name, :string, null: false
      add :count, :integer, null: false, default: 0
    end

    create unique_index(:events, [:name], prefix: "audit")
  end
end
