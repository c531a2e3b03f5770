defmodule Mix.Tasks.Compile.PglitePort do
  @moduledoc """
  Puts a `pglite-port` binary in place for this platform, then fills its module cache.

  Where the binary comes from, first match wins:

    1. `PGLITE_BUILD_FROM_SOURCE=1`: `cargo build --release` of `native/`;
    2. `priv/native/<triple>/pglite-port`, when it matches the SHA-256 in
       `pglite-port.sha256` beside it (build_release.sh's local output);
    3. the release artifact for this target listed in `pglite-port.checksums`: taken
       from the user cache, or downloaded (see `PgliteEx.Prebuilt`) and refused unless
       its SHA-256 matches;
    4. otherwise `cargo build --release`.

  A download that fails falls back to cargo when cargo and the crate are there; every
  other failure (checksum mismatch, no network and no cargo) stops with what to do.
  The chosen binary is copied into the app's build directory, with the PostgreSQL
  modules compiled ahead of time beside it in `pglite-modules/`: taken from the
  prebuilt directory or the release (`pglite-modules-<version>-<triple>.tar.gz`, SHA-256
  checked) when they are there, and whatever is missing compiled by
  `pglite-port --precompile-to` (~10 s). So no start of the app compiles anything.

  Nothing happens when nothing changed.
  """
  use Mix.Task.Compiler

  alias PgliteEx.{Executable, Prebuilt}

  @recursive true

  @impl true
  def run(_args) do
    root = Path.dirname(Mix.Project.project_file())
    triple = Executable.target_triple()
    dest = Executable.installed_path(Mix.Project.app_path())
    manifest = Path.join(Mix.Project.manifest_path(), "compile.pglite_port")
    {kind, stamp} = choose(root, triple)

    if File.regular?(dest) and File.read(manifest) == {:ok, stamp} do
      {:noop, []}
    else
      source = produce(kind, root, triple)
      File.mkdir_p!(Path.dirname(dest))
      # Copy beside, then rename: a running instance keeps its old binary, unharmed.
      File.cp!(source, dest <> ".new")
      File.chmod!(dest <> ".new", 0o755)
      File.rename!(dest <> ".new", dest)
      modules = Path.join(Path.dirname(dest), "pglite-modules")
      ship_modules(kind, root, triple, modules)
      precompile(dest, modules)
      File.mkdir_p!(Path.dirname(manifest))
      File.write!(manifest, stamp)
      {:ok, []}
    end
  end

  @impl true
  def manifests, do: [Path.join(Mix.Project.manifest_path(), "compile.pglite_port")]

  defp choose(root, triple) do
    prebuilt = Executable.prebuilt(root, triple)

    cond do
      System.get_env("PGLITE_BUILD_FROM_SOURCE") in ["1", "true"] ->
        {:cargo, source_stamp(root)}

      valid_prebuilt?(prebuilt) ->
        {{:prebuilt, prebuilt}, "prebuilt:" <> File.read!(prebuilt <> ".sha256")}

      entry = Prebuilt.entry(root, version(), triple) ->
        {{:download, entry}, "download:" <> entry.sha256}

      true ->
        {:cargo, source_stamp(root)}
    end
  end

  defp version, do: Mix.Project.config()[:version]

  defp valid_prebuilt?(path) do
    with true <- File.regular?(path),
         {:ok, line} <- File.read(path <> ".sha256"),
         [expected | _] <- String.split(line) do
      actual = Prebuilt.sha256(File.read!(path))

      if actual == String.downcase(expected) do
        true
      else
        Mix.shell().error("pglite: #{path} does not match its checksum; building from source instead")
        false
      end
    else
      _ -> false
    end
  end

  # Every input of the cargo build: a change in any of them means build again.
  defp source_stamp(root) do
    files =
      [Path.join(root, "Cargo.toml"), Path.join(root, "Cargo.lock"), Path.join(root, "native/backtrace/Cargo.toml")] ++
        Path.wildcard(Path.join(root, "native/src/**/*.rs")) ++
        Path.wildcard(Path.join(root, "native/backtrace/src/**/*.rs")) ++
        Path.wildcard(Path.join(root, "native/tsearch_data/*.stop")) ++
        Path.wildcard(Path.join(root, "native/encodings/*.so"))

    entries =
      for file <- Enum.sort(files), {:ok, stat} <- [File.stat(file, time: :posix)],
          do: "#{file}:#{stat.size}:#{stat.mtime}"

    "cargo:" <> Base.encode16(:crypto.hash(:sha256, Enum.join(entries, "\n")), case: :lower)
  end

  defp produce({:prebuilt, path}, _root, triple) do
    Mix.shell().info("==> pglite: using the prebuilt pglite-port for #{triple}")
    path
  end

  defp produce({:download, entry}, root, triple) do
    case Prebuilt.fetch(entry, version()) do
      {:ok, artifact} ->
        Mix.shell().info("==> pglite: using the released pglite-port for #{triple} (SHA-256 checked)")
        unpacked = Path.join(Mix.Project.app_path(), "bin/pglite-port.download")
        Prebuilt.unpack(artifact, unpacked)
        unpacked

      {:error, {:checksum_mismatch, url, expected, actual}} ->
        Mix.raise("""
        pglite: refused #{url}: its SHA-256 is #{actual}, but pglite-port.checksums says #{expected}.
          The file was changed on the way or on the server. Nothing was installed.
          Fix: point PGLITE_DOWNLOAD_URL at a trustworthy copy of the release, or build from
          source with PGLITE_BUILD_FROM_SOURCE=1 (needs Rust's cargo).
        """)

      {:error, {:download_failed, url, reason}} ->
        if System.find_executable("cargo") && File.regular?(Path.join(root, "Cargo.toml")) do
          Mix.shell().error("pglite: could not download #{url} (#{reason}); building from source instead")
          produce(:cargo, root, triple)
        else
          Mix.raise("""
          pglite: could not download #{url}: #{reason}
            Fix: check the network (or proxy) and compile again, set PGLITE_DOWNLOAD_URL to a
            mirror of the release, or install Rust's cargo (https://rustup.rs) and compile with
            PGLITE_BUILD_FROM_SOURCE=1.
          """)
        end
    end
  end

  defp produce(:cargo, root, triple) do
    cargo = System.find_executable("cargo")

    unless cargo do
      Mix.raise("""
      pglite: no prebuilt pglite-port for #{triple} and no cargo to build one.
        Either install Rust (cargo) from https://rustup.rs and compile again,
        or run build_release.sh on a machine with Rust and put its output at
          #{Executable.prebuilt(root, triple)}
        together with pglite-port.sha256 beside it.
      """)
    end

    Mix.shell().info("==> pglite: building pglite-port with cargo (the first build takes ~10 minutes)")

    {_, status} =
      System.cmd(cargo, ["build", "--release", "--bin", "pglite-port"],
        cd: root,
        into: IO.stream(:stdio, :line),
        stderr_to_stdout: true
      )

    if status != 0, do: Mix.raise("pglite: cargo build failed with status #{status}")
    target_dir = System.get_env("CARGO_TARGET_DIR") || Path.join(root, "target")
    Path.join([target_dir, "release", "pglite-port"])
  end

  # Modules compiled elsewhere for this target, when the binary's source has them.
  defp ship_modules({:prebuilt, binary}, _root, _triple, modules) do
    shipped = Path.join(Path.dirname(binary), "pglite-modules")

    if File.dir?(shipped) do
      File.mkdir_p!(modules)

      # Copy beside, then rename: a running instance maps the old files.
      for file <- File.ls!(shipped) do
        File.cp!(Path.join(shipped, file), Path.join(modules, file <> ".new"))
        File.rename!(Path.join(modules, file <> ".new"), Path.join(modules, file))
      end
    end
  end

  defp ship_modules({:download, _}, root, triple, modules) do
    with entry when entry != nil <- Prebuilt.modules_entry(root, version(), triple),
         {:ok, artifact} <- Prebuilt.fetch(entry, version()),
         :ok <- Prebuilt.unpack_modules(artifact, modules) do
      Mix.shell().info("==> pglite: using the released PostgreSQL modules for #{triple} (SHA-256 checked)")
    else
      nil -> :ok
      {:error, reason} -> Mix.shell().error("pglite: no released modules (#{inspect(reason)}); compiling them here")
    end
  end

  defp ship_modules(:cargo, _root, _triple, _modules), do: :ok

  defp precompile(binary, modules) do
    Mix.shell().info("==> pglite: compiling PostgreSQL's modules ahead of time where missing (~10 s)")

    case System.cmd(binary, ["--precompile-to", modules], stderr_to_stdout: true) do
      {out, 0} -> Mix.shell().info("==> " <> (out |> String.trim() |> String.split("\n") |> List.last()))
      {out, status} -> Mix.raise("pglite: #{binary} --precompile-to failed (#{status}):\n#{out}")
    end
  end
end
