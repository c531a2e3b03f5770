defmodule PgliteEx.PortProcess do
  @moduledoc """
  The `pglite-port` OS process: starting it and waiting for its ready frame, writing
  frames to it, asking it to cancel the running statement, stopping it, and reading
  its stderr log.

  stdout carries `{:packet, 4}` frames; stderr goes to a file in the instance's run
  directory, so a failed start can say why.
  """
  require Logger

  alias PgliteEx.Wire

  @type t :: %{port: port(), os_pid: non_neg_integer(), stderr_path: String.t(), parameters: [{String.t(), String.t()}]}

  @stop_timeout 15_000

  @doc """
  Starts the port and waits for its first frame (the session's startup reply). Options:
  `:executable`, `:env`, `:timeout`, `:run_dir`.
  """
  @spec open(keyword()) :: {:ok, t()} | {:error, term()}
  def open(opts) do
    stderr_path = Path.join(opts[:run_dir], "port-#{System.unique_integer([:positive])}.log")
    File.write!(stderr_path, "")

    # sh only redirects stderr to a file (stdout carries frames), then becomes the port.
    port =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :binary,
        {:packet, 4},
        :exit_status,
        args: ["-c", ~s(exec "$0" 2>>"$1"), opts[:executable], stderr_path],
        env: Enum.map(opts[:env], fn {k, v} -> {String.to_charlist(k), String.to_charlist(v)} end)
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    process = %{port: port, os_pid: os_pid, stderr_path: stderr_path, parameters: []}

    receive do
      {^port, {:data, frame}} ->
        {:ok, messages, ""} = Wire.split(frame)
        params = for {?S, body, _} <- messages, do: body |> :binary.split(<<0>>, [:global]) |> Enum.take(2) |> List.to_tuple()
        {:ok, %{process | parameters: params}}

      {^port, {:exit_status, status}} ->
        {:error, startup_error(status, stderr_tail(process))}

      # Dead while being written to (EPIPE) or mid-frame: closed without a status.
      {:EXIT, ^port, reason} ->
        {:error, {:port_exited, reason, stderr_tail(process)}}
    after
      opts[:timeout] ->
        kill(process)
        {:error, :startup_timeout}
    end
  end

  defp startup_error(4, tail) do
    case Regex.run(~r/data directory (.+) is in use/, tail) do
      [_, path] -> {:data_dir_in_use, path}
      _ -> {:port_exited, 4, tail}
    end
  end

  defp startup_error(1, tail) do
    cond do
      match = Regex.run(~r/template (.+) (is in use by a running instance|was not stopped cleanly)/, tail) ->
        case match do
          [_, path, "is in use" <> _] -> {:template_in_use, path}
          [_, path, _] -> {:template_not_stopped, path}
        end

      match = Regex.run(~r/the data directory cannot start: (.+?): PostgreSQL did not start/, tail) ->
        {:bad_data_dir, Enum.at(match, 1)}

      true ->
        {:port_exited, 1, tail}
    end
  end

  defp startup_error(status, tail), do: {:port_exited, status, tail}

  @doc """
  Asks the port to cancel the request that came in frames `first..last` (numbered
  from 1 in the order written, cancels not counted; see `next_frame/1`): a
  CancelRequest packet as a frame of its own, whose pid and key fields carry the two
  numbers. The port cancels it if it runs, when it starts if it is still queued, and
  ignores the cancel if it has finished, so it never hits another client's request.
  """
  @spec cancel(t(), pos_integer(), pos_integer()) :: :ok | :closed
  def cancel(process, first, last), do: command(process, <<16::32, 80_877_102::32, first::32, last::32>>)

  @doc """
  Asks the port to answer `<<0, "pglite:idle">>` once the backend has answered every
  frame written before this one and waits for input (an IdleProbe packet, not numbered).
  """
  @spec probe(t()) :: :ok | :closed
  def probe(process), do: command(process, <<8::32, 80_877_124::32>>)

  @doc """
  Asks the port to hold the backend's output (a PauseOutput packet, acted on at once,
  not numbered): the backend blocks in its next write until `resume_output/1`.
  """
  @spec pause_output(t()) :: :ok | :closed
  def pause_output(process), do: command(process, <<8::32, 80_877_125::32>>)

  @doc "Lets the backend's output flow again (a ResumeOutput packet)."
  @spec resume_output(t()) :: :ok | :closed
  def resume_output(process), do: command(process, <<8::32, 80_877_126::32>>)

  @doc """
  Exempts the next frame written from the session's `statement_timeout` (an Untimed
  packet, not numbered): the front end's own work between clients, which a setting a
  departed client left must not cancel.
  """
  @spec untimed(t()) :: :ok | :closed
  def untimed(process), do: command(process, <<8::32, 80_877_127::32>>)

  @doc "The number the port gives the frame written after frame `n` (0: none yet)."
  @spec next_frame(non_neg_integer()) :: pos_integer()
  def next_frame(n) when n >= 0xFFFFFFFF, do: 1
  def next_frame(n), do: n + 1

  @doc "The number of the frame written before frame `n`."
  @spec previous_frame(pos_integer()) :: pos_integer()
  def previous_frame(1), do: 0xFFFFFFFF
  def previous_frame(n), do: n - 1

  @doc """
  Writes frames to the port. A port whose process has just died (kill -9) is closed
  before its exit message is handled; writing to it is then not an error here
  (`:closed`): that message, already on its way, says what happened.
  """
  @spec command(t(), iodata()) :: :ok | :closed
  def command(process, payload) do
    Port.command(process.port, payload)
    :ok
  rescue
    ArgumentError -> :closed
  end

  @doc "Sends Terminate (the port checkpoints and exits 0) and waits; kills it if it hangs."
  @spec stop(t()) :: :ok
  def stop(process) do
    case command(process, Wire.terminate()) do
      :ok -> await_exit(process)
      # Its process is gone already: nothing to wait for or kill.
      :closed -> :ok
    end

    File.rm(process.stderr_path)
    :ok
  end

  defp await_exit(process) do
    receive do
      {port, {:exit_status, _}} when port == process.port -> :ok
    after
      @stop_timeout ->
        Logger.error("pglite-port did not stop in time; killing it")
        kill(process)
    end
  end

  @doc "Forgets a port that has exited: removes its log."
  @spec discard(t()) :: :ok
  def discard(process) do
    File.rm(process.stderr_path)
    :ok
  end

  defp kill(process), do: System.cmd("kill", ["-9", Integer.to_string(process.os_pid)], stderr_to_stdout: true)

  @doc "The last 20 lines the port wrote to stderr."
  @spec stderr_tail(t()) :: String.t()
  def stderr_tail(process) do
    case File.read(process.stderr_path) do
      {:ok, text} -> text |> String.split("\n", trim: true) |> Enum.take(-20) |> Enum.join("\n")
      _ -> ""
    end
  end
end
