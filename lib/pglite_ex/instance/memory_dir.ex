defmodule PgliteEx.Instance.MemoryDir do
  @moduledoc """
  Owns the directory where an in-memory instance's port keeps what PostgreSQL writes
  (`PGLITE_MEMORY_DIR`), so that the data outlives the port process: when the port is
  killed (kill -9, the OOM killer, a bug), it is started again on the same directory
  and PostgreSQL's crash recovery finds every acknowledged commit, as with a
  `data_dir`.

  The directory is RAM-backed where the system has one with at least 1 GiB free
  (`/dev/shm`), else in the temporary directory. The port removes it when it shuts down
  cleanly (the instance stops, or the BEAM exits and the port sees the end of its
  input), and so does this process when the instance stops. Directories left by an
  operating-system process that is gone (a BEAM and its port both killed) are removed
  when the next in-memory instance starts.
  """
  use GenServer

  @prefix "pglite-mem-"

  @doc "A fresh path for an instance's memory directory (not created yet)."
  @spec new_path() :: Path.t()
  def new_path do
    random = Base.url_encode64(:crypto.strong_rand_bytes(9), padding: false)
    Path.join(base(), "#{@prefix}#{System.pid()}-#{random}")
  end

  # /dev/shm only with room to spare: a container's is often 64 MB, and a full one would
  # be a full disk to PostgreSQL.
  @min_free_kb 1024 * 1024

  defp base do
    if match?({:ok, %{access: :read_write}}, File.stat("/dev/shm")) and free_kb("/dev/shm") >= @min_free_kb,
      do: "/dev/shm",
      else: System.tmp_dir!()
  end

  defp free_kb(dir) do
    with {out, 0} <- System.cmd("df", ["-Pk", dir], stderr_to_stdout: true),
         [_, line | _] <- String.split(out, "\n"),
         [_, _, _, free | _] <- String.split(line),
         {kb, ""} <- Integer.parse(free) do
      kb
    else
      _ -> 0
    end
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
