# Memory of an instance per test module: the suite's template, one instance from it,
# then 8 more; prints the memory of each port process (where PostgreSQL runs): its
# resident set, and its proportional share (PSS: pages shared with the other ports,
# such as the compiled module, counted once across them), idle and after some work.
EctoSuite.Setup.suite()
template = :persistent_term.get({EctoSuite.Setup, :template})

mb = fn kb -> Float.round(kb / 1024, 1) end

kb = fn pg, field ->
  os_pid = PgliteEx.os_pid(PgliteEx.Instance.backend(pg))
  [kb] = Regex.run(~r/^#{field}:\s+(\d+) kB/m, File.read!("/proc/#{os_pid}/smaps_rollup"), capture: :all_but_first)
  String.to_integer(kb)
end

report = fn label, all ->
  for field <- ["Rss", "Pss"] do
    per = Enum.map(all, &kb.(&1, field))
    IO.puts("#{label}: #{field} #{mb.(Enum.sum(per) / length(per))} MB per instance (min #{mb.(Enum.min(per))}, max #{mb.(Enum.max(per))})")
  end
end

start = fn -> {:ok, pg} = Pglite.start_link(template: template, database: "suite"); pg end
{us, first} = :timer.tc(start)
IO.puts("first instance from the template: started in #{div(us, 1000)} ms")
{us, more} = :timer.tc(fn -> Enum.map(1..8, fn _ -> start.() end) end)
all = [first | more]
IO.puts("8 more, one after another: #{div(us, 8000)} ms each")
Process.sleep(2_000)
report.("9 instances, idle", all)

for pg <- all do
  {:ok, _} = Pglite.query(pg, "INSERT INTO posts (title, inserted_at, updated_at) SELECT 'p' || n, now(), now() FROM generate_series(1, 1000) n")
end

Process.sleep(2_000)
report.("after 1,000 inserts each", all)
