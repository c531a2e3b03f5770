import Config

# An app's repo as generated: its own database per environment, created and dropped
# with mix ecto.create / ecto.drop (the instance serves its cluster's databases in turn).
config :ecto_check, ecto_repos: [EctoCheck.Repo]

config :ecto_check, EctoCheck.Repo,
  socket_dir: System.fetch_env!("PGLITE_SOCKET_DIR"),
  port: 5432,
  username: "postgres",
  password: "postgres",
  database: "ecto_check_#{config_env()}",
  # Ecto's default (:table_lock) holds a transaction on one connection while the
  # migration runs on another: with one backend they would wait on each other.
  migration_lock: String.to_atom(System.get_env("MIGRATION_LOCK", "pg_advisory_lock")),
  pool_size: 4

if config_env() == :test, do: config(:ecto_check, EctoCheck.Repo, pool: Ecto.Adapters.SQL.Sandbox)
