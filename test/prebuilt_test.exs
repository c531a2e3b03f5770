defmodule Pglite.PrebuiltTest do
  @moduledoc """
  Prebuilt binaries reach users: the Mix compiler downloads the artifact for this
  target, and PostgreSQL compiled ahead of time for it, from a release page (here a local HTTP server serving build_release.sh's
  output), checks its SHA-256 against the package's pglite-port.checksums, and refuses a
  tampered file. The package copy has no Rust crate, so nothing can be built instead.
  """
  use ExUnit.Case, async: false

  alias PgliteEx.{Executable, Prebuilt}

  @moduletag timeout: 600_000
  @root Path.expand("..", __DIR__)

  @tag :tmp_dir
  test "a package without the crate installs the released binary, checksum checked; a tampered one is refused",
       %{tmp_dir: tmp} do
    release = Path.join(tmp, "release")
    {out, 0} = System.cmd(Path.join(@root, "build_release.sh"), [release], stderr_to_stdout: true)
    assert out =~ "built:"

    # What a Hex package would carry: mix.exs, lib/ and the checksums (no native/, no Cargo.toml).
    pkg = Path.join(tmp, "pkg")
    File.mkdir_p!(pkg)
    File.cp!(Path.join(@root, "mix.exs"), Path.join(pkg, "mix.exs"))
    File.cp_r!(Path.join(@root, "lib"), Path.join(pkg, "lib"))
    File.cp!(Path.join(release, "pglite-port.checksums"), Prebuilt.checksum_file(pkg))
    version = Mix.Project.config()[:version]
    entry = Prebuilt.entry(pkg, version, Executable.target_triple())
    assert entry, "build_release.sh lists this target"

    tampered = Path.join(tmp, "tampered")
    File.mkdir_p!(tampered)
    good = File.read!(Path.join(release, entry.name))
    File.write!(Path.join(tampered, entry.name), good <> "!")

    app = host_app(tmp, pkg)
    cached = Path.join([:filename.basedir(:user_cache, ~c"pglite") |> to_string(), "bin", entry.name])
    modules = Prebuilt.modules_entry(pkg, version, Executable.target_triple())
    assert modules, "build_release.sh ships this target's compiled modules"
    File.rm(Path.join(Path.dirname(cached), modules.name))

    {:ok, _} = Application.ensure_all_started(:inets)
    {:ok, server} = :inets.start(:httpd, port: 0, server_name: ~c"localhost", server_root: to_charlist(tmp),
                      document_root: to_charlist(tmp), bind_address: {127, 0, 0, 1})
    port = :httpd.info(server)[:port]

    try do
      # A tampered download: refused, nothing installed.
      File.rm(cached)
      {out, status} = compile(app, "http://127.0.0.1:#{port}/tampered")
      assert status != 0
      assert out =~ "refused http://127.0.0.1:#{port}/tampered/#{entry.name}"
      assert out =~ "PGLITE_BUILD_FROM_SOURCE=1"
      refute File.exists?(installed(app))
      refute File.exists?(cached)

      # No network and no crate to build: the error names the fixes.
      {out, status} = compile(app, "http://127.0.0.1:1/nowhere")
      assert status != 0
      assert out =~ "could not download http://127.0.0.1:1/nowhere/#{entry.name}"
      assert out =~ "PGLITE_DOWNLOAD_URL"

      # The real release: installed, and the app runs PostgreSQL with it.
      {out, 0} = compile(app, "http://127.0.0.1:#{port}/release")
      assert out =~ "using the released pglite-port"
      assert File.read!(installed(app)) == :zlib.gunzip(good)
      # PostgreSQL comes compiled too: nothing is compiled on this machine.
      assert out =~ "using the released PostgreSQL modules"
      assert out =~ ": 0 modules compiled"
      {out, 0} = System.cmd("mix", ["run", "-e", "HostApp.check()"], cd: app, stderr_to_stdout: true, env: [{"MIX_ENV", "dev"}])
      assert out =~ "answer: 42"

      # Later builds take it from the user cache, without the network.
      File.rm_rf!(Path.join(app, "_build"))
      {out, 0} = compile(app, "http://127.0.0.1:1/nowhere")
      assert out =~ "using the released pglite-port"
      assert out =~ ": 0 modules compiled"
    after
      :inets.stop(:httpd, server)
    end
  end

  defp host_app(tmp, pkg) do
    app = Path.join(tmp, "app")
    File.cp_r!(Path.join(@root, "test/fixtures/host_app"), app)
    File.rm_rf!(Path.join(app, "_build"))
    mix = File.read!(Path.join(app, "mix.exs")) |> String.replace(~s(path: "../../.."), ~s(path: #{inspect(pkg)}))
    File.write!(Path.join(app, "mix.exs"), mix)
    app
  end

  defp compile(app, url) do
    System.cmd("mix", ["compile"], cd: app, stderr_to_stdout: true, env: [{"MIX_ENV", "dev"}, {"PGLITE_DOWNLOAD_URL", url}])
  end

  defp installed(app), do: Path.join(app, "_build/dev/lib/pglite/bin/pglite-port")
end
