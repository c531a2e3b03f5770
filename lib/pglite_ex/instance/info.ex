defmodule PgliteEx.Instance.Info do
  @moduledoc """
  Owns the instance's socket directory and holds what clients need to connect,
  including the SCRAM secret derived from the password.

  By default the directory is a fresh private one (mode 0700) that is removed on stop;
  a directory given with `socket_dir:` is used as it is and only our socket is removed.
  """
  use GenServer

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)

    with :ok <- File.mkdir_p(opts.socket_dir),
         :ok <- if(opts.own_dir, do: File.chmod(opts.socket_dir, 0o700), else: :ok) do
      {:ok,
       %{
         socket_dir: opts.socket_dir,
         own_dir: opts.own_dir,
         port: opts.port,
         database: opts.database,
         username: opts.username,
         password: opts.password,
         scram: PgliteEx.Server.Scram.secret(opts.password),
         # For the port's one-shot tools (pg_dump).
         port_executable: opts.port_executable,
         env: opts.env
       }}
    else
      {:error, reason} -> {:stop, {:socket_dir, opts.socket_dir, reason}}
    end
  end

  @impl true
  def handle_call(:info, _from, info), do: {:reply, info, info}

  @impl true
  def terminate(_reason, info) do
    if info.own_dir, do: File.rm_rf(info.socket_dir), else: File.rm(Path.join(info.socket_dir, ".s.PGSQL.#{info.port}"))
    :ok
  end
end
