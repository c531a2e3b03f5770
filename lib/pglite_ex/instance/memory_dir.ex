defmodule PgliteEx.Instance.MemoryDir do
  @moduledoc """
  Owns the directory where an in-memory instance's port keeps what PostgreSQL writes
  (`PGLITE_MEMORY_DIR`), so that the data outlives the port process: when the port is
  killed (kill -9, the OOM killer, a bug), it is started again on the same directory
  and PostgreSQL's crash recovery finds every acknowledged commit, as with a
  `data_dir`.

  The directory is RAM-backed where the system has one (`/dev/shm`), else in the
  temporary directory; it is removed when the instance stops. Directories left by an
  operating-system process that is gone (a BEAM killed with -9) are removed when the
  next in-memory instance starts.
  """
  use GenServer

  @prefix "pglite-mem-"

  @doc "A fresh path for an instance's memory directory (not created yet)."
  @spec new_path() :: Path.t()
  def new_path do
    random = Base.url_encode64(:crypto.strong_rand_bytes(9), padding: false)
    Path.join(base(), "#{@prefix}#{System.pid()}-#{random}")
  end

  defp base do
    if File.dir?("/dev/shm") and match?({:ok, %{access: :read_write}}, File.stat("/dev/shm")),
      do: "/dev/shm",
      else: System.tmp_dir!()
  end

  @doc false
  def start_link(path), do: GenServer.start_link(__MODULE__, path)

  @impl true
  def init(path) do
    Process.flag(:trap_exit, true)
    remove_orphans(Path.dirname(path))

    case File.mkdir_p(path) do
      :ok -> {:ok, path}
      {:error, reason} -> {:stop, {:memory_dir, path, reason}}
    end
  end

  # Only where the OS tells which processes live (/proc): elsewhere they stay.
  defp remove_orphans(dir) do
    if File.dir?("/proc/self") do
      for name <- Path.wildcard(Path.join(dir, @prefix <> "*")),
          [_, os_pid] <- [Regex.run(~r/#{@prefix}(\d+)-/, Path.basename(name))],
          not File.dir?("/proc/#{os_pid}"),
          do: File.rm_rf(name)
    end
  end

  @impl true
  def terminate(_reason, path) do
    File.rm_rf(path)
    :ok
  end
end
