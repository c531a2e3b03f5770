# What a client of another database costs when the instance must switch to it
# (`PgliteEx.Databases`: a clean stop of the port, then a start on that database):
# psql connecting and running `SELECT 1` in the database served (the baseline), and
# in the other one, alternately, so that every second connect switches. Prints the
# median wall time of each and their ratio.
#
#     mix run bench/database_switch.exs [rounds]

rounds = String.to_integer(List.first(System.argv()) || "20")
{:ok, pg} = Pglite.start_link()
c = Pglite.get_connection_opts(pg)

psql = fn database ->
  {micros, {_, 0}} =
    :timer.tc(fn ->
      System.cmd("psql", ["-X", "-q", "-h", c[:socket_dir], "-p", "#{c[:port]}", "-U", c[:username], "-d", database, "-c", "SELECT 1"],
        env: [{"PGPASSWORD", c[:password]}]
      )
    end)

  micros / 1000
end

median = fn xs -> xs |> Enum.sort() |> Enum.at(div(length(xs), 2)) end
psql.("postgres")
{:ok, _} = Pglite.query(pg, "CREATE DATABASE other")

same = for _ <- 1..rounds, do: psql.("postgres")
switching = for _ <- 1..rounds, do: [psql.("other"), psql.("postgres")]
switching = List.flatten(switching)

IO.puts("psql connect + SELECT 1, median of #{rounds} (same) and #{2 * rounds} (switching) runs, #{Date.utc_today()}")
IO.puts("same database:    #{Float.round(median.(same), 1)} ms")
IO.puts("another database: #{Float.round(median.(switching), 1)} ms (every connect switches)")
IO.puts("ratio:            #{Float.round(median.(switching) / median.(same), 2)}x")
