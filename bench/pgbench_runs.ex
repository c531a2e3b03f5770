defmodule Bench.PgbenchRuns do
  @moduledoc """
  What the pgbench benchmarks share: their command line, running pgbench, and the
  median tps of each target over rounds in which the targets take turns (this VM's
  speed drifts by tens of percent within a minute; one run each let the drift decide).
  """

  @doc "`[seconds_per_run] [rounds]` from the command line; 3 rounds by default."
  def args(argv, default_seconds) do
    case argv do
      [] -> {default_seconds, 3}
      [s] -> {s, 3}
      [s, r | _] -> {s, String.to_integer(r)}
    end
  end

  @doc """
  How this VM polls its file descriptors, for the table's header: with scheduler
  polling (the default) or without it (`ERL_FLAGS="+IOs false"`, README, Performance).
  A VM with scheduler polling has a pollset that no poll thread waits on.
  """
  def io_polling do
    scheduler_pollset? = Enum.any?(:erlang.system_info(:check_io), &(&1[:poll_threads] == 0 and &1[:fallback] == false))
    if scheduler_pollset?, do: "BEAM scheduler polling on (default)", else: "BEAM scheduler polling off (+IOs false)"
  end

  @doc "Runs a command; its output, or a raise with it."
  def run!(cmd, args, env) do
    case System.cmd(cmd, args, env: env, stderr_to_stdout: true) do
      {out, 0} -> out
      {out, status} -> raise "#{cmd} #{Enum.join(args, " ")} failed (#{status}):\n#{out}"
    end
  end

  @doc "`pgbench -i -s 1` with server-side generation."
  def init!({conn, env}), do: run!("pgbench", conn ++ ["-i", "-q", "-I", "dtGvp", "-s", "1", "postgres"], env)

  @doc "Median tps of each `{name, {conn_args, env}}` target running `args`, `rounds` times."
  def median_tps(targets, args, seconds, rounds) do
    samples = for _ <- 1..rounds, {name, {conn, env}} <- targets, do: {name, tps(run!("pgbench", conn ++ args ++ ["-T", seconds, "postgres"], env))}
    samples |> Enum.group_by(&elem(&1, 0), &elem(&1, 1)) |> Map.new(fn {name, xs} -> {name, median(xs)} end)
  end

  @doc """
  One run of `args` against a target, with the CPU time (user and system) that each of
  `os_pids` (`[label: os_pid]`) used meanwhile, per transaction: `%{label => µs}`.
  """
  def cpu_per_transaction({conn, env}, args, seconds, os_pids) do
    before = Map.new(os_pids, fn {label, pid} -> {label, cpu_ticks(pid)} end)
    out = run!("pgbench", conn ++ args ++ ["-T", seconds, "postgres"], env)
    [_, n] = Regex.run(~r/processed: (\d+)/, out)
    {hz, 0} = System.cmd("getconf", ["CLK_TCK"])
    per_tx = 1_000_000 / (String.to_integer(String.trim(hz)) * String.to_integer(n))
    Map.new(os_pids, fn {label, pid} -> {label, (cpu_ticks(pid) - before[label]) * per_tx} end)
  end

  # utime + stime, fields 14 and 15 of /proc/<pid>/stat (the name field has no spaces here).
  defp cpu_ticks(pid) do
    [utime, stime] = File.read!("/proc/#{pid}/stat") |> String.split() |> Enum.slice(13, 2)
    String.to_integer(utime) + String.to_integer(stime)
  end

  defp tps(out) do
    [_, v] = Regex.run(~r/tps = ([\d.]+) \(without initial/, out)
    String.to_float(v)
  end

  defp median(xs), do: xs |> Enum.sort() |> Enum.at(div(length(xs), 2))
end
