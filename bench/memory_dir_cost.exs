# What keeping an in-memory instance's files outside the port costs (crash safety:
# `PgliteEx.Instance.MemoryDir`): pgbench's rows against two in-memory instances in
# one run, the library's default (files in a RAM-backed directory that outlives the
# port) and the port's own memory (`PGLITE_MEMORY_DIR` empty: a crash loses the data),
# taking turns; prints the tps of each and their ratio.
#
#     mix run bench/memory_dir_cost.exs [seconds_per_run] [rounds]

Code.require_file("pgbench_runs.ex", __DIR__)
alias Bench.PgbenchRuns
{seconds, rounds} = PgbenchRuns.args(System.argv(), "4")

{:ok, safe} = Pglite.start_link()
{:ok, own} = Pglite.start_link(env: [{"PGLITE_MEMORY_DIR", ""}])

target = fn pg ->
  c = Pglite.get_connection_opts(pg)
  {["-h", c[:socket_dir], "-p", "#{c[:port]}", "-U", c[:username]], [{"PGPASSWORD", c[:password]}]}
end

targets = [files_outside: target.(safe), own_memory: target.(own)]

try do
  for {_, t} <- targets, do: PgbenchRuns.init!(t)
  IO.puts("pgbench, #{seconds} s per run, median of #{rounds} rounds, scale 1, #{Date.utc_today()}")
  IO.puts(String.pad_trailing("workload", 26) <> Enum.map_join(["files outside", "own memory", "ratio"], "", &String.pad_leading(&1, 15)))

  for {label, args} <- [
        {"-S, 1 client, simple", ["-S", "-c", "1", "-M", "simple"]},
        {"-S, 8 clients, prepared", ["-S", "-c", "8", "-j", "2", "-M", "prepared"]},
        {"tpcb-like, 1 client", ["-c", "1"]},
        {"tpcb-like, 8 clients", ["-c", "8", "-j", "2"]}
      ] do
    r = PgbenchRuns.median_tps(targets, args, seconds, rounds)
    cells = [r.files_outside, r.own_memory] |> Enum.map(&:erlang.float_to_binary(&1, decimals: 0))
    ratio = :erlang.float_to_binary(r.files_outside / r.own_memory, decimals: 2) <> "x"
    IO.puts(String.pad_trailing(label, 26) <> Enum.map_join(cells ++ [ratio], "", &String.pad_leading(&1, 15)))
  end
after
  Pglite.stop(safe)
  Pglite.stop(own)
end
