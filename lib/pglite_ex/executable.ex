defmodule PgliteEx.Executable do
  @moduledoc """
  Where the `pglite-port` binary is: the platform's Rust target triple, the prebuilt
  binaries under `priv/native/<triple>/`, and the copy the Mix compiler installs.
  """

  @doc """
  This machine's Rust target triple, from `:erlang.system_info(:system_architecture)`.
  """
  @spec target_triple() :: String.t()
  def target_triple, do: target_triple(to_string(:erlang.system_info(:system_architecture)))

  @doc false
  @spec target_triple(String.t()) :: String.t()
  def target_triple(arch) do
    [cpu | rest] = String.split(arch, "-")
    cpu = if cpu in ["arm64", "aarch64"], do: "aarch64", else: cpu
    text = Enum.join(rest, "-")

    cond do
      String.contains?(text, "apple-darwin") -> "#{cpu}-apple-darwin"
      String.contains?(text, "linux-musl") -> "#{cpu}-unknown-linux-musl"
      String.contains?(text, "linux") -> "#{cpu}-unknown-linux-gnu"
      String.contains?(text, "win32") or String.contains?(text, "windows") -> "#{cpu}-pc-windows-msvc"
      true -> "#{cpu}-#{text}"
    end
  end

  @doc "Path of a prebuilt binary for `triple` inside a project directory."
  @spec prebuilt(Path.t(), String.t()) :: Path.t()
  def prebuilt(root, triple), do: Path.join([root, "priv", "native", triple, "pglite-port"])

  @doc "Where the Mix compiler installs the binary it chose, inside the app's build directory."
  @spec installed_path(Path.t()) :: Path.t()
  def installed_path(app_dir), do: Path.join([app_dir, "bin", "pglite-port"])

  @doc """
  The binary to run: the one given, else the one the compiler installed.
  """
  @spec find(String.t() | nil) :: {:ok, String.t()} | {:error, :port_executable_not_found}
  def find(nil) do
    case :code.lib_dir(:pglite) do
      {:error, _} -> {:error, :port_executable_not_found}
      dir -> find(installed_path(to_string(dir)))
    end
  end

  def find(path) do
    if File.regular?(path), do: {:ok, Path.expand(path)}, else: {:error, :port_executable_not_found}
  end
end
