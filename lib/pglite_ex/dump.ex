defmodule PgliteEx.Dump do
  @moduledoc """
  A plain-SQL dump of a running instance made by PostgreSQL 17's own pg_dump: the
  WASIX build bundled with the runtime, run by `pglite-port --pg-dump` under Wasmer.
  pg_dump connects like any client, over TCP on 127.0.0.1; an instance without a TCP
  listener gets one on a free port for the length of the dump.
  """

  alias PgliteEx.Instance
  alias PgliteEx.Server.Listener

  @doc "Dumps the instance's database into `path` (replaced only when the dump succeeds)."
  @spec run(Supervisor.supervisor(), Path.t(), timeout()) :: :ok | {:error, term()}
  def run(instance, path, timeout) do
    info = Instance.info(instance)

    with_tcp_port(instance, info.tcp_port, fn port ->
      args = [
        "--pg-dump",
        Path.expand(path),
        "--dump-port",
        Integer.to_string(port),
        "--username",
        info.username,
        "--database",
        info.database
      ]

      task =
        Task.async(fn ->
          System.cmd(info.port_executable, args, env: [{"PGPASSWORD", info.password} | info.env], stderr_to_stdout: true)
        end)

      case Task.yield(task, timeout) || Task.shutdown(task, :brutal_kill) do
        {:ok, {_, 0}} -> :ok
        {:ok, {out, status}} -> {:error, {:pg_dump_failed, status, out |> String.replace_prefix("pglite-port: ", "") |> String.trim()}}
        nil -> {:error, :timeout}
      end
    end)
  end

  defp with_tcp_port(_instance, port, fun) when is_integer(port), do: fun.(port)

  defp with_tcp_port(instance, nil, fun) do
    spec = Supervisor.child_spec({Listener, endpoint: {:tcp, 0}, instance: instance}, id: {Listener, :dump})

    case Supervisor.start_child(instance, spec) do
      {:ok, listener} ->
        try do
          fun.(Listener.port(listener))
        after
          Supervisor.terminate_child(instance, {Listener, :dump})
          Supervisor.delete_child(instance, {Listener, :dump})
        end

      {:error, reason} ->
        {:error, {:listen_failed, reason}}
    end
  end
end
