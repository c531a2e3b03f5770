defmodule PgliteEx.Prebuilt do
  @moduledoc """
  Prebuilt `pglite-port` binaries published with a release, the way `rustler_precompiled`
  does it: the package carries `pglite-port.checksums` (SHA-256 of each target's
  artifact, in `sha256sum` format, written by `build_release.sh`); the Mix compiler
  downloads the artifact for this target from a base URL, refuses it unless its SHA-256
  matches, and keeps it in the user cache directory. The PostgreSQL modules compiled
  ahead of time for the target (`pglite-port --precompile-to`) come the same way, as
  `pglite-modules-<version>-<target triple>.tar.gz`, so that nothing is compiled on
  the user's machine.

  The base URL is `PGLITE_DOWNLOAD_URL`, else the application environment
  `config :pglite, download_url: ...`, else the project's release page for this version.
  Artifacts are named `pglite-port-<version>-<target triple>.gz`.
  """

  @default_url "https://github.com/pglite-elixir/pglite/releases/download/v{version}"
  @checksums "pglite-port.checksums"

  @typedoc "One published artifact: its file name and expected SHA-256 (hex)."
  @type entry :: %{name: String.t(), sha256: String.t()}

  @doc "Artifact file name for a version and target."
  @spec artifact_name(String.t(), String.t()) :: String.t()
  def artifact_name(version, triple), do: "pglite-port-#{version}-#{triple}.gz"

  @doc "File name of the compiled-modules artifact for a version and target."
  @spec modules_name(String.t(), String.t()) :: String.t()
  def modules_name(version, triple), do: "pglite-modules-#{version}-#{triple}.tar.gz"

  @doc "The checksum file of a package root."
  @spec checksum_file(Path.t()) :: Path.t()
  def checksum_file(root), do: Path.join(root, @checksums)

  @doc "The published binary for this version and target, if the package lists one."
  @spec entry(Path.t(), String.t(), String.t()) :: entry() | nil
  def entry(root, version, triple), do: listed(root, artifact_name(version, triple))

  @doc "The published compiled modules for this version and target, if the package lists them."
  @spec modules_entry(Path.t(), String.t(), String.t()) :: entry() | nil
  def modules_entry(root, version, triple), do: listed(root, modules_name(version, triple))

  defp listed(root, name) do
    case File.read(checksum_file(root)) do
      {:ok, text} ->
        Enum.find_value(String.split(text, "\n"), fn line ->
          case String.split(line) do
            [sha, file] -> if String.trim_leading(file, "*") == name, do: %{name: name, sha256: String.downcase(sha)}
            _ -> nil
          end
        end)

      {:error, _} ->
        nil
    end
  end

  @doc "Where artifacts are downloaded from."
  @spec base_url(String.t()) :: String.t()
  def base_url(version) do
    url = System.get_env("PGLITE_DOWNLOAD_URL") || Application.get_env(:pglite, :download_url) || @default_url
    url |> String.replace("{version}", version) |> String.trim_trailing("/")
  end

  @doc """
  The verified artifact's path in the cache, downloading it first if needed.
  Errors: `{:download_failed, url, reason}` or `{:checksum_mismatch, url, expected, actual}`.
  """
  @spec fetch(entry(), String.t()) :: {:ok, Path.t()} | {:error, term()}
  def fetch(entry, version) do
    cached = Path.join([cache_dir(), "bin", entry.name])

    if File.regular?(cached) and sha256(File.read!(cached)) == entry.sha256 do
      {:ok, cached}
    else
      url = "#{base_url(version)}/#{entry.name}"

      with {:ok, body} <- download(url),
           :ok <- verify(body, entry, url) do
        File.mkdir_p!(Path.dirname(cached))
        File.write!(cached <> ".part", body)
        File.rename!(cached <> ".part", cached)
        {:ok, cached}
      end
    end
  end

  @doc """
  Puts the modules of a verified modules artifact into the directory `dest`. Each file
  is renamed into place, never overwritten: a running port maps the old ones.
  """
  @spec unpack_modules(Path.t(), Path.t()) :: :ok | {:error, term()}
  def unpack_modules(artifact, dest) do
    tmp = dest <> ".unpack"
    File.rm_rf!(tmp)

    with :ok <- :erl_tar.extract(to_charlist(artifact), [:compressed, cwd: to_charlist(tmp)]) do
      File.mkdir_p!(dest)
      # The archive holds a top-level pglite-modules/ directory.
      for file <- File.ls!(Path.join(tmp, "pglite-modules")) do
        File.rename!(Path.join([tmp, "pglite-modules", file]), Path.join(dest, file))
      end

      File.rm_rf!(tmp)
      :ok
    end
  end

  @doc "Writes the binary inside a verified artifact to `dest` (mode 0755)."
  @spec unpack(Path.t(), Path.t()) :: :ok
  def unpack(artifact, dest) do
    File.mkdir_p!(Path.dirname(dest))
    File.write!(dest, :zlib.gunzip(File.read!(artifact)))
    File.chmod!(dest, 0o755)
  end

  defp verify(body, entry, url) do
    case sha256(body) do
      sha when sha == entry.sha256 -> :ok
      sha -> {:error, {:checksum_mismatch, url, entry.sha256, sha}}
    end
  end

  defp download(url) do
    {:ok, _} = Application.ensure_all_started(:inets)
    {:ok, _} = Application.ensure_all_started(:ssl)
    http_options = [timeout: 300_000, connect_timeout: 15_000] ++ tls(url)

    case :httpc.request(:get, {String.to_charlist(url), []}, http_options, body_format: :binary) do
      {:ok, {{_, 200, _}, _headers, body}} -> {:ok, body}
      {:ok, {{_, status, reason}, _, _}} -> {:error, {:download_failed, url, "HTTP #{status} #{reason}"}}
      {:error, reason} -> {:error, {:download_failed, url, inspect(reason)}}
    end
  end

  # Certificates checked against the system's CA store.
  defp tls("https://" <> _) do
    [
      ssl: [
        verify: :verify_peer,
        cacerts: :public_key.cacerts_get(),
        depth: 4,
        customize_hostname_check: [match_fun: :public_key.pkix_verify_hostname_match_fun(:https)]
      ]
    ]
  end

  defp tls(_url), do: []

  defp cache_dir do
    case System.get_env("PGLITE_CACHE_DIR") do
      nil -> :filename.basedir(:user_cache, ~c"pglite") |> to_string()
      dir -> dir
    end
  end

  @doc "SHA-256 of bytes, as lowercase hex."
  @spec sha256(iodata()) :: String.t()
  def sha256(bytes), do: :crypto.hash(:sha256, bytes) |> Base.encode16(case: :lower)
end
