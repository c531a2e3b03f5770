defmodule EctoSuite.MixProject do
  # A generated app suite (40 async modules x 10 Sandbox tests) for bench/ecto_suite.sh:
  # ecto, ecto_sql, postgrex... come from checkouts in ECTO_DEPS_DIR, pglite from this
  # repository.
  use Mix.Project

  def project do
    # Its tests end in _suite.exs: the pglite suite must not run them.
    [app: :ecto_suite, version: "0.1.0", elixir: "~> 1.14", deps: deps(), test_pattern: "*_suite.exs"]
  end

  def application, do: [extra_applications: [:logger]]

  defp deps do
    dir = System.fetch_env!("ECTO_DEPS_DIR")
    pglite = {:pglite, path: System.fetch_env!("PGLITE_REPO")}
    [pglite | for(name <- ~w(ecto_sql ecto postgrex db_connection decimal telemetry)a, do: {name, path: Path.join(dir, "#{name}"), override: true})]
  end
end
