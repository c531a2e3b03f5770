defmodule Mix.Tasks.Pglite.Dump do
  @shortdoc "Dumps a pglite data directory to plain SQL (PostgreSQL 17's pg_dump)"
  @moduledoc """
  Writes a plain-SQL dump of the database in a pglite data directory, made by
  PostgreSQL 17's own pg_dump, for loading into a server PostgreSQL with psql:

      mix pglite.dump --data-dir DIR --file OUT.sql [--database NAME] [--username NAME]
      psql -h myserver -d newdb -f OUT.sql

  The directory must exist and no other instance may be using it (stop it first, or
  call `Pglite.dump/2` on the running instance). OUT.sql appears only when the dump
  succeeded.
  """
  use Mix.Task

  @switches [data_dir: :string, file: :string, database: :string, username: :string]

  @impl true
  def run(args) do
    {opts, _rest, invalid} = OptionParser.parse(args, strict: @switches)
    if invalid != [], do: Mix.raise("pglite.dump: unknown or invalid options #{inspect(invalid)}")
    dir = opts[:data_dir] || Mix.raise("pglite.dump: --data-dir DIR is required")
    file = opts[:file] || Mix.raise("pglite.dump: --file OUT.sql is required")
    unless File.dir?(dir), do: Mix.raise("pglite.dump: there is no data directory at #{Path.expand(dir)}")
    Mix.Task.run("app.start")

    case Pglite.start_link([data_dir: dir] ++ Keyword.take(opts, [:database, :username])) do
      {:ok, pg} ->
        result = Pglite.dump(pg, file)
        Pglite.stop(pg)

        case result do
          :ok -> Mix.shell().info("pglite.dump: wrote #{Path.expand(file)}")
          {:error, {:pg_dump_failed, _, message}} -> Mix.raise("pglite.dump: #{message}")
          {:error, reason} -> Mix.raise("pglite.dump: #{inspect(reason)}")
        end

      {:error, {:data_dir_in_use, path}} ->
        Mix.raise("pglite.dump: #{path} is in use by a running instance; stop it, or call Pglite.dump/2 on it")

      {:error, reason} ->
        Mix.raise("pglite.dump: could not start: #{inspect(reason)}")
    end
  end
end
