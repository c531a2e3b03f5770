defmodule EctoSuite.Repo do
  use Ecto.Repo, otp_app: :ecto_suite, adapter: Ecto.Adapters.Postgres
end

defmodule EctoSuite.Post do
  use Ecto.Schema
  import Ecto.Changeset

  schema "posts" do
    field :title, :string
    has_many :comments, EctoSuite.Comment
    timestamps()
  end

  def changeset(post, attrs), do: post |> cast(attrs, [:title]) |> validate_required([:title]) |> unique_constraint(:title)
end

defmodule EctoSuite.Comment do
  use Ecto.Schema

  schema "comments" do
    field :body, :string
    belongs_to :post, EctoSuite.Post
  end
end

defmodule EctoSuite.Setup do
  @moduledoc """
  Where the suite's database comes from, by `BENCH_MODE`:

    * `server` - a PostgreSQL server (`PGHOST` socket directory, `PGPORT`), one repo
      with the Sandbox, as a Phoenix app is set up;
    * `shared` - one pglite instance for the whole suite, one repo with the Sandbox;
    * `per_module` - a template migrated once, then an instance of its own (cloned
      from it) and a repo for each test module, with the Sandbox inside.
  """
  alias Ecto.Adapters.SQL.Sandbox
  alias EctoSuite.Repo

  @repo_opts [pool: Sandbox, log: false]

  def mode, do: System.get_env("BENCH_MODE", "per_module")

  # test/ecto/app's migrations (posts, comments).
  defp migrations, do: Path.join(System.fetch_env!("PGLITE_REPO"), "test/ecto/app/priv/repo/migrations")

  @doc "Run once before the suite (test_helper.exs)."
  def suite do
    case mode() do
      "server" ->
        opts = [socket_dir: System.fetch_env!("PGHOST"), port: String.to_integer(System.get_env("PGPORT", "5432")), username: "postgres", password: "", database: "postgres"]
        shared_repo(opts)

      "shared" ->
        {:ok, pg} = Pglite.start_link(database: "suite")
        shared_repo(Pglite.get_connection_opts(pg))

      "per_module" ->
        template = Path.join(System.tmp_dir!(), "ecto_suite_template")
        {:ok, template} = Pglite.Template.create(template, &migrate(Pglite.get_connection_opts(&1)), database: "suite")
        :persistent_term.put({__MODULE__, :template}, template)
    end
  end

  defp shared_repo(opts) do
    {:ok, _} = Repo.start_link(opts ++ @repo_opts ++ [pool_size: 10])
    Ecto.Migrator.run(Repo, migrations(), :up, all: true, log: false, migration_lock: false)
    Sandbox.mode(Repo, :manual)
  end

  defp migrate(opts) do
    {:ok, repo} = Repo.start_link(opts ++ [name: nil, pool_size: 1, log: false])
    Ecto.Migrator.run(Repo, migrations(), :up, all: true, log: false, migration_lock: false, dynamic_repo: repo)
    Supervisor.stop(repo)
  end

  @doc "The repo a test module uses (its setup_all): its own in per_module mode."
  def module_repo do
    case mode() do
      "per_module" ->
        template = :persistent_term.get({__MODULE__, :template})
        pg = ExUnit.Callbacks.start_supervised!({Pglite, template: template, database: "suite"})
        repo = ExUnit.Callbacks.start_supervised!({Repo, Pglite.get_connection_opts(pg) ++ @repo_opts ++ [name: nil, pool_size: 2]})
        Sandbox.mode(repo, :manual)
        repo

      _ ->
        Repo
    end
  end
end

defmodule EctoSuite.DataCase do
  @moduledoc "The DataCase of a Phoenix app, with a repo per module when there is one."
  use ExUnit.CaseTemplate
  alias Ecto.Adapters.SQL.Sandbox

  using do
    quote do
      alias EctoSuite.{Comment, Post, Repo}
      import Ecto.Query
    end
  end

  setup_all do
    %{repo: EctoSuite.Setup.module_repo()}
  end

  setup %{repo: repo} = tags do
    EctoSuite.Repo.put_dynamic_repo(repo)
    owner = Sandbox.start_owner!(repo, shared: not tags[:async])
    on_exit(fn -> Sandbox.stop_owner(owner) end)
  end
end
