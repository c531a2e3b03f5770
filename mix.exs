defmodule Pglite.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :pglite,
      version: @version,
      elixir: ">= 1.14.0",
      start_permanent: Mix.env() == :prod,
      compilers: Mix.compilers() ++ [:pglite_port],
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      # Only the Mix compiler downloads (PgliteEx.Prebuilt); the running app needs neither.
      xref: [exclude: [:httpc, :public_key]],
      description: "Real PostgreSQL 17 embedded in Elixir: PGlite under Wasmer, spoken to over a PostgreSQL socket.",
      docs: [main: "Pglite"]
    ]
  end

  def application do
    [extra_applications: [:logger, :crypto]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end
