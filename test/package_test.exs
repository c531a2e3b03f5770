defmodule Pglite.PackageTest do
  @moduledoc """
  The Hex package is enough to use pglite: a copy holding exactly the files `mix.exs`
  lists in `package: [files: ...]`, used as a dependency by a fresh project, builds
  `pglite-port` from its Rust crate (as when no prebuilt binary can be downloaded),
  compiles PostgreSQL ahead of time, and runs `Pglite.start_link/1` and a query.

  With `PGLITE_PACKAGE_DIR` set to what `mix hex.build --unpack` made, that package is
  used instead of the copy: `test/package/hex_build.sh HEX_CHECKOUT` does so by hand
  (the Hex client is built from its source; hex.pm and GitHub are out of CI's reach).
  """
  use ExUnit.Case, async: false

  @moduletag timeout: 900_000
  @root Path.expand("..", __DIR__)

  @tag :tmp_dir
  test "a project depending on a copy of the package's files builds pglite from source and queries it", %{tmp_dir: tmp} do
    files = Mix.Project.config()[:package][:files]
    assert "native" in files and "Cargo.lock" in files and "lib" in files
    refute Enum.any?(files, &(&1 in ["test", "bench", "_build", "target"]))

    pkg = System.get_env("PGLITE_PACKAGE_DIR") || copy_package(files, Path.join(tmp, "pkg"))
    assert File.exists?(Path.join(pkg, "native/src/main.rs")) and File.exists?(Path.join(pkg, "Cargo.lock"))
    refute File.exists?(Path.join(pkg, "test")), "tests are not shipped"

    app = Path.join(tmp, "app")
    File.cp_r!(Path.join(@root, "test/fixtures/host_app"), app)
    File.rm_rf!(Path.join(app, "_build"))
    mix = File.read!(Path.join(app, "mix.exs")) |> String.replace(~s(path: "../../.."), ~s(path: #{inspect(pkg)}))
    File.write!(Path.join(app, "mix.exs"), mix)

    # The crate's dependencies come from this checkout's cargo build, not again.
    env = [{"MIX_ENV", "dev"}, {"PGLITE_BUILD_FROM_SOURCE", "1"}, {"CARGO_TARGET_DIR", Path.join(@root, "target")}]
    {out, status} = System.cmd("mix", ["compile"], cd: app, env: env, stderr_to_stdout: true)
    assert status == 0, out
    assert out =~ "building pglite-port with cargo"

    {out, status} = System.cmd("mix", ["run", "-e", "HostApp.check()"], cd: app, env: env, stderr_to_stdout: true)
    assert status == 0, out
    assert out =~ "answer: 42"
  end

  defp copy_package(files, pkg) do
    File.mkdir_p!(pkg)

    # pglite-port.checksums exists only in a release (build_release.sh writes it).
    for file <- files, File.exists?(Path.join(@root, file)) do
      File.cp_r!(Path.join(@root, file), Path.join(pkg, file))
    end

    pkg
  end
end
