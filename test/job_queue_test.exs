defmodule Pglite.JobQueueTest do
  @moduledoc """
  A job library's pattern works (Oban's): workers polling with FOR UPDATE SKIP LOCKED in
  short transactions, a producer that NOTIFYs as it inserts, a listener on its own
  connection and a session advisory lock held all along. 10 s here;
  `JOB_QUEUE_SECONDS=60` by hand.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @moduletag timeout: 300_000

  test "every job is done exactly once, nothing stalls past the idle timeout, no connection is dropped" do
    seconds = System.get_env("JOB_QUEUE_SECONDS", "10")
    {:ok, pg} = Pglite.start_link(idle_in_transaction_timeout: 2_000)
    {out, 0} = python(pg, "job_queue", [seconds, "4"])
    IO.puts("\n" <> out)

    [_, produced, done, twice, left] = Regex.run(~r/produced (\d+) done (\d+) twice (\d+) left (\d+)/, out)
    assert String.to_integer(produced) > 100
    assert done == produced and twice == "0" and left == "0", out
    [_, slowest] = Regex.run(~r/slowest statement ([\d.]+) s/, out)
    assert String.to_float(slowest) < 2.0, out
    [_, heard] = Regex.run(~r/notifications heard (\d+)/, out)
    assert String.to_integer(heard) * 5 == String.to_integer(produced), out
    assert out =~ "errors 0 []"
    Pglite.stop(pg)
  end
end
