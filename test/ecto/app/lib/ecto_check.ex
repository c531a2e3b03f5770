defmodule EctoCheck.Repo do
  use Ecto.Repo, otp_app: :ecto_check, adapter: Ecto.Adapters.Postgres
end

defmodule EctoCheck.Application do
  use Application
  def start(_type, _args), do: Supervisor.start_link([EctoCheck.Repo], strategy: :one_for_one)
end

defmodule EctoCheck.Post do
  use Ecto.Schema
  import Ecto.Changeset

  schema "posts" do
    field :title, :string
    has_many :comments, EctoCheck.Comment
    timestamps()
  end

  def changeset(post, attrs), do: post |> cast(attrs, [:title]) |> validate_required([:title]) |> unique_constraint(:title)
end

defmodule EctoCheck.Comment do
  use Ecto.Schema

  schema "comments" do
    field :body, :string
    belongs_to :post, EctoCheck.Post
  end
end

defmodule EctoCheck.AuditEvent do
  use Ecto.Schema
  @schema_prefix "audit"

  schema "events" do
    field :name, :string
    field :count, :integer, default: 0
  end
end
