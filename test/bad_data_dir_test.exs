defmodule Pglite.BadDataDirTest do
  @moduledoc """
  A data directory PostgreSQL cannot start on says why and what to do, in one line
  (`{:error, {:bad_data_dir, why}}`), and is left as it was: made by another major
  version, a damaged control file, a missing write-ahead log. (A directory in use is
  `{:data_dir_in_use, path}`: SupervisionTest.)
  """
  use ExUnit.Case, async: true

  @moduletag :tmp_dir

  # A real data directory, stopped cleanly, then broken by `break`.
  defp broken(tmp, name, break) do
    dir = Path.join(tmp, name)
    {:ok, pg} = Pglite.start_link(data_dir: dir)
    {:ok, _} = Pglite.query(pg, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)")
    Pglite.stop(pg)
    break.(dir)
    dir
  end

  defp files(dir), do: dir |> Path.join("**") |> Path.wildcard() |> Enum.sort() |> Enum.map(&{&1, File.stat!(&1).size})

  test "each way a data directory cannot start is one line that says what to do", %{tmp_dir: tmp} do
    cases = [
      {"version", &File.write!(Path.join(&1, "PG_VERSION"), "9\n"), "another PostgreSQL major version"},
      {"control", &File.write!(Path.join(&1, "global/pg_control"), :crypto.strong_rand_bytes(8192)), "control file (global/pg_control) is damaged"},
      {"wal", &Enum.each(Path.wildcard(Path.join(&1, "pg_wal/0*")), fn f -> File.rm!(f) end), "write-ahead log (pg_wal) is missing or damaged"}
    ]

    for {name, break, expected} <- cases do
      dir = broken(tmp, name, break)
      before = files(dir)
      assert {:error, {:bad_data_dir, why}} = Pglite.start_link(data_dir: dir)
      assert why =~ expected, "#{name}: #{why}"
      refute why =~ "\n"
      assert files(dir) == before, "#{name}: the directory is left as it was"
    end
  end
end
