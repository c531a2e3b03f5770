defmodule Pglite.Template do
  @moduledoc """
  A data directory to start instances from: set up a schema once (run the migrations),
  then give each test module an instance of its own that starts with it in place.

      # test/test_helper.exs
      {:ok, template} =
        Pglite.Template.create("_build/test/pglite_template", fn pg ->
          # a repo started with these options (name: nil), and Ecto.Migrator.run/4
          # on it with `dynamic_repo:` (the README's recipe)
          Pglite.get_connection_opts(pg)
        end, database: "my_app_test")

      # in a module's setup_all
      pg = start_supervised!({Pglite, template: template, database: "my_app_test"})

  An instance started with `template:` and no `data_dir` keeps its data in memory
  over the template, copy on write: it starts as fast as an empty instance, holds only
  what it changes, and never writes the template. Instances from one template are
  independent databases: nothing one does is seen by another. While any of them runs,
  the template is locked for reading (no instance can run on it), and one cannot be
  made from a directory an instance still runs on (`{:error, {:template_in_use, path}}`).
  """

  @doc """
  Makes a template at `path`: starts an instance on that directory (fresh: one made
  before, recognised by its `PG_VERSION` file, is removed first), calls `setup` with it,
  then stops it cleanly. `opts` are `Pglite.start_link/1` options (`:database`,
  `:username`, ...; not `:data_dir` or `:memory`); start the instances that use the
  template with the same `:database` and `:username`.

  Returns `{:ok, path}`. When `setup` raises, exits or returns `{:error, reason}`, the
  half-made template is removed and `{:error, reason}` returned, so no instance starts
  from it.
  """
  @spec create(Path.t(), (Pglite.instance() -> term()), keyword()) :: {:ok, Path.t()} | {:error, term()}
  def create(path, setup, opts \\ []) when is_function(setup, 1) and is_list(opts) do
    path = Path.expand(path)

    with :ok <- clear(path),
         {:ok, pg} <- Pglite.start_link(Keyword.merge(opts, data_dir: path, memory: false)) do
      result = run(setup, pg)
      Pglite.stop(pg)

      case result do
        :ok ->
          {:ok, path}

        {:error, _} = error ->
          File.rm_rf(path)
          error
      end
    end
  end

  defp run(setup, pg) do
    case setup.(pg) do
      {:error, _} = error -> error
      _ -> :ok
    end
  rescue
    e -> {:error, {:setup_raised, Exception.message(e)}}
  catch
    :exit, reason -> {:error, {:setup_exited, reason}}
  end

  # Only a data directory (or nothing) is removed: a wrong path must not cost user files.
  defp clear(path) do
    cond do
      File.regular?(Path.join(path, "PG_VERSION")) -> with({:ok, _} <- File.rm_rf(path), do: :ok)
      not File.exists?(path) -> :ok
      File.dir?(path) and File.ls!(path) == [] -> :ok
      true -> {:error, {:not_a_data_dir, path}}
    end
  end
end
