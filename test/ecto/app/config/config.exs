import Config

# The instance's database and role (an instance serves one of each: README, Limits).
config :ecto_check, ecto_repos: [EctoCheck.Repo]

config :ecto_check, EctoCheck.Repo,
  socket_dir: System.fetch_env!("PGLITE_SOCKET_DIR"),
  port: 5432,
  username: "postgres",
  password: "postgres",
  database: "postgres",
  # Ecto's default (:table_lock) holds a transaction on one connection while the
  # migration runs on another: with one backend they would wait on each other.
  migration_lock: String.to_atom(System.get_env("MIGRATION_LOCK", "pg_advisory_lock")),
  pool_size: 4

if config_env() == :test, do: config(:ecto_check, EctoCheck.Repo, pool: Ecto.Adapters.SQL.Sandbox)
