defmodule PgliteEx.Databases do
  @moduledoc """
  Which database of the cluster the shared backend serves, and the clients that wait
  for another one.

  PostgreSQL opens a backend on one database and cannot change it, so an instance
  serves its cluster's databases one at a time, as `mix ecto.create` and `mix
  ecto.drop` need (they connect to `postgres` to create or drop the repo's database):
  a client naming another database waits until no client of the served one is
  connected and nothing runs, then the front end checks that the database exists and
  accepts connections (the server's FATAL `3D000` or `55000` when not), and starts the
  port again on it. A client that waits longer than `wait_ms/0` is refused with FATAL
  `55006`, naming the database that holds the instance.

  Pure: `PgliteEx` keeps this in its state and performs what it decides.
  """

  @enforce_keys [:serving]
  defstruct [:serving, waiting: []]

  @typedoc "A client waiting for `database`, with what its registration needs."
  @type waiter :: %{
          from: GenServer.from(),
          secret: non_neg_integer(),
          settings: map(),
          database: String.t(),
          deadline: integer()
        }

  @type t :: %__MODULE__{serving: String.t(), waiting: [waiter()]}

  # Long enough for a tool that connects to `postgres` and leaves (mix ecto.create)
  # just before the app's pool connects; short enough to tell a user why at once.
  @wait_ms 5_000

  @doc "How long a client may wait for the backend to serve its database."
  @spec wait_ms() :: pos_integer()
  def wait_ms, do: @wait_ms

  @spec new(String.t()) :: t()
  def new(database), do: %__MODULE__{serving: database}

  @doc "Adds a client to those waiting, last in line."
  @spec wait(t(), waiter()) :: t()
  def wait(dbs, waiter), do: %{dbs | waiting: dbs.waiting ++ [waiter]}

  @doc """
  The database to switch to now, or nil: the first waiter's, once no client of the
  served database is connected and the backend is `free?` (nothing runs or waits).
  """
  @spec due(t(), non_neg_integer(), boolean()) :: String.t() | nil
  def due(%__MODULE__{waiting: [first | _]}, 0, true), do: first.database
  def due(_dbs, _connected, _free?), do: nil

  @doc "Takes every waiter for `database` out of the line."
  @spec take(t(), String.t()) :: {[waiter()], t()}
  def take(dbs, database) do
    {taken, rest} = Enum.split_with(dbs.waiting, &(&1.database == database))
    {taken, %{dbs | waiting: rest}}
  end

  @doc "Takes the waiter whose call is `from` out of the line (nil if it is not there)."
  @spec take_from(t(), GenServer.from()) :: {waiter() | nil, t()}
  def take_from(dbs, from) do
    case Enum.split_with(dbs.waiting, &(&1.from == from)) do
      {[waiter], rest} -> {waiter, %{dbs | waiting: rest}}
      _ -> {nil, dbs}
    end
  end

  @doc "Every waiter, taken out of the line."
  @spec take_all(t()) :: {[waiter()], t()}
  def take_all(dbs), do: {dbs.waiting, %{dbs | waiting: []}}

  @doc "The query, run on the served database, whose answer `verdict/2` reads."
  @spec check_sql(String.t()) :: String.t()
  def check_sql(database),
    do: "SELECT datallowconn FROM pg_catalog.pg_database WHERE datname = " <> PgliteEx.SessionState.literal(database)

  @doc """
  Whether a client may be served `database`, from the check's messages: `:ok`, or the
  FATAL a server answers in its StartupMessage's place.
  """
  @spec verdict([{byte(), binary()}], String.t()) :: :ok | {:fatal, String.t(), String.t()}
  def verdict(messages, database) do
    case for({?D, <<1::16, 1::32, allowed>>} <- messages, do: allowed) do
      [?t] -> :ok
      [?f] -> {:fatal, "55000", ~s(database "#{database}" is not currently accepting connections)}
      [] -> if Enum.any?(messages, &match?({?E, _}, &1)), do: {:fatal, "XX000", ~s(could not look up database "#{database}")}, else: {:fatal, "3D000", ~s(database "#{database}" does not exist)}
    end
  end

  @doc "The FATAL for a client that waited `wait_ms/0` in vain."
  @spec busy(t(), String.t(), non_neg_integer()) :: {:fatal, String.t(), String.t()}
  def busy(dbs, database, connected) do
    {:fatal, "55006",
     ~s(database "#{database}" cannot be served now: this pglite instance serves one database at a time, ) <>
       ~s(and #{connected} client#{if connected == 1, do: "", else: "s"} of database "#{dbs.serving}" #{if connected == 1, do: "is", else: "are"} connected)}
  end
end
