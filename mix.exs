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
      docs: [main: "Pglite"],
      package: package()
    ]
  end

  # What a build from Hex needs: the Elixir code, the Rust crate the Mix compiler falls
  # back to (native/, Cargo.toml, Cargo.lock; its tests are named by Cargo.toml), and
  # the checksums of the prebuilt binaries (written by build_release.sh for a release;
  # a package built without them always builds with cargo). Not test/ or bench/.
  defp package do
    checksums = if File.exists?("pglite-port.checksums"), do: ["pglite-port.checksums"], else: []

    [
      licenses: ["Apache-2.0"],
      links: %{"PGlite" => "https://pglite.dev", "Wasmer" => "https://wasmer.io"},
      files: ~w(lib mix.exs README.md LICENSE NOTICE CHANGELOG.md Cargo.toml Cargo.lock native) ++ checksums
    ]
  end

  def application do
    [extra_applications: [:logger, :crypto]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end
