defmodule EctoCheck.MixProject do
  # An Ecto app as a new user writes it, run against `mix pglite.server` by
  # test/ecto/run.sh: ecto, ecto_sql, postgrex... come from checkouts in ECTO_DEPS_DIR.
  use Mix.Project

  def project do
    # Its tests end in _check.exs: the pglite suite, which holds this directory, must not run them.
    [app: :ecto_check, version: "0.1.0", elixir: "~> 1.14", deps: deps(), test_pattern: "*_check.exs", aliases: [test: ["ecto.create --quiet", "ecto.migrate --quiet", "test"]]]
  end

  def application, do: [extra_applications: [:logger], mod: {EctoCheck.Application, []}]

  defp deps do
    dir = System.fetch_env!("ECTO_DEPS_DIR")
    for name <- ~w(ecto_sql ecto postgrex db_connection decimal telemetry)a, do: {name, path: Path.join(dir, "#{name}"), override: true}
  end
end
