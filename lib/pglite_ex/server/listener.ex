defmodule PgliteEx.Server.Listener do
  @moduledoc """
  Listens on one endpoint (a Unix socket path, or a TCP port on 127.0.0.1) and starts a
  `PgliteEx.Server.Connection` for each accepted client under the instance's
  connection supervisor.
  """
  use GenServer
  require Logger

  alias PgliteEx.Server.Connection

  @doc false
  def child_spec(opts) do
    %{id: {__MODULE__, opts[:endpoint]}, start: {__MODULE__, :start_link, [opts]}}
  end

  @doc """
  Options: `endpoint: {:unix, path} | {:tcp, port}`, `instance:` (supervisor pid),
  `authentication_timeout:` (ms each client has to log in).
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    endpoint = opts[:endpoint]
    common = [:binary, active: false, packet: :raw, reuseaddr: true, backlog: 512]

    listen =
      case endpoint do
        {:unix, path} ->
          File.rm(path)
          :gen_tcp.listen(0, [{:ifaddr, {:local, String.to_charlist(path)}} | common])

        {:tcp, port} ->
          :gen_tcp.listen(port, [{:ip, {127, 0, 0, 1}}, nodelay: true] ++ common)
      end

    case listen do
      {:ok, socket} ->
        me = self()
        acceptor = spawn_link(fn -> accept_loop(socket, {opts[:instance], opts[:authentication_timeout]}, me) end)
        {:ok, %{socket: socket, endpoint: endpoint, acceptor: acceptor}}

      {:error, reason} ->
        {:stop, {:listen_failed, endpoint, reason}}
    end
  end

  @doc "The port number this listener is bound to (TCP), or nil."
  @spec port(pid()) :: non_neg_integer() | nil
  def port(listener), do: GenServer.call(listener, :port)

  @impl true
  def handle_call(:port, _from, %{endpoint: {:tcp, _}} = state) do
    {:ok, port} = :inet.port(state.socket)
    {:reply, port, state}
  end

  def handle_call(:port, _from, state), do: {:reply, nil, state}

  @impl true
  def handle_info({:EXIT, pid, reason}, %{acceptor: pid} = state), do: {:stop, reason, state}
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    :gen_tcp.close(state.socket)
    with {:unix, path} <- state.endpoint, do: File.rm(path)
    :ok
  end

  defp accept_loop(socket, {instance, _} = client_opts, listener) do
    case :gen_tcp.accept(socket) do
      {:ok, client} ->
        if match?({:ok, {{127, _, _, _}, _}}, :inet.peername(client)), do: :inet.setopts(client, nodelay: true)

        case DynamicSupervisor.start_child(PgliteEx.Instance.connections(instance), {Connection, {client, client_opts}}) do
          {:ok, pid} -> Connection.hand_over(pid, client)
          {:error, reason} -> Logger.error("could not start a connection: #{inspect(reason)}") && :gen_tcp.close(client)
        end

        accept_loop(socket, client_opts, listener)

      {:error, :closed} ->
        exit(:normal)

      {:error, reason} ->
        exit({:accept_failed, reason})
    end
  end
end
