defmodule Pglite.MixCompilerTest do
  @moduledoc "The Mix compiler: platform triples, and pglite as a path dependency of another project."
  use ExUnit.Case, async: false

  alias PgliteEx.Executable

  @fixture Path.expand("fixtures/host_app", __DIR__)
  @moduletag timeout: 600_000

  test "system architectures map to Rust target triples" do
    assert Executable.target_triple("x86_64-pc-linux-gnu") == "x86_64-unknown-linux-gnu"
    assert Executable.target_triple("aarch64-unknown-linux-gnu") == "aarch64-unknown-linux-gnu"
    assert Executable.target_triple("aarch64-apple-darwin23.4.0") == "aarch64-apple-darwin"
    assert Executable.target_triple("x86_64-apple-darwin21.6.0") == "x86_64-apple-darwin"
    assert Executable.target_triple("x86_64-alpine-linux-musl") == "x86_64-unknown-linux-musl"
  end

  test "the compiler installs the binary for this project and reports what it did" do
    assert {:ok, path} = Executable.find(nil)
    assert {out, 0} = System.cmd(path, ["--help"])
    assert out =~ "PGLITE_DATA_DIR"
  end

  test "pglite works as a path dependency, and a second compile does nothing" do
    File.rm_rf!(Path.join(@fixture, "_build"))
    env = [{"MIX_ENV", "dev"}]

    {out, status} = System.cmd("mix", ["compile"], cd: @fixture, env: env, stderr_to_stdout: true)
    assert status == 0, out
    assert out =~ "==> pglite: compiling PostgreSQL's modules ahead of time"
    modules = Path.join(@fixture, "_build/dev/lib/pglite/bin/pglite-modules")
    assert length(File.ls!(modules)) > 30, "PostgreSQL, its extensions and pg_dump, compiled"

    {out, status} = System.cmd("mix", ["run", "-e", "HostApp.check()"], cd: @fixture, env: env, stderr_to_stdout: true)
    assert status == 0, out
    assert out =~ "answer: 42"

    {out, status} = System.cmd("mix", ["compile"], cd: @fixture, env: env, stderr_to_stdout: true)
    assert status == 0, out
    refute out =~ "pglite:", "nothing changed, so the compiler does nothing: #{out}"
  end
end
