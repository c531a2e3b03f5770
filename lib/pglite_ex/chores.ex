defmodule PgliteEx.Chores do
  @moduledoc """
  The front end's own work between turns, and what each chore writes to the backend:
  a pure function of the chore, the backend's transaction status and the clients'
  settings. `PgliteEx` runs them (untimed, before any client's turn: `PgliteEx.Turns`)
  and reads their replies.

    * `{:apply, settings, pid}` - put a client's session settings in place
    * `{:register, from, pid}` - a new client's start-up settings, checked and reported
    * `{:capture, pid, custom_names}` - what a client's turn left in the session (`PgliteEx.SessionState`)
    * `{:query, from, sql}` / `{:reply, from, messages}` - `Pglite.query/2` and its answer
    * `{:sql, sql}` - LISTEN/UNLISTEN and drops after a client left (nil: nothing)
    * `:rollback` - end a transaction nobody holds
    * `{:close, statements}` - close a departed client's prepared statements
    * `{:reparse, pid, parses}` - a client's prepared statements again, after another client's `DEALLOCATE ALL` closed them
    * `{:notify, pid, notifier, encoding, notifications}` - notifications converted into a listener's encoding
    * `{:barrier, token}` - end whatever a vanished client left running
    * `{:look_up, waiter}` / `{:switch, database}` - another database (`PgliteEx.Databases`)
  """

  alias PgliteEx.{Databases, Notifications, SessionState, Wire}

  @typedoc "What a chore writes: the messages and the kinds of reply owed, or `:barrier` (an idle probe follows)."
  @type payload :: {iodata(), [byte()] | :barrier}

  @doc """
  The messages a chore sends, or nil when it has nothing to send (it is done at once).
  `status` is the backend's last ReadyForQuery status; `settings_of` gives a client's
  settings.
  """
  @spec payload(term(), byte(), (pid() -> map())) :: payload() | nil
  def payload({:apply, settings, _}, _status, _settings_of), do: query(SessionState.restore_sql(settings))
  def payload({:register, _from, pid}, _status, settings_of), do: query(SessionState.restore_sql(settings_of.(pid)))
  def payload({:capture, _, custom_names}, _status, _settings_of), do: query(SessionState.capture_sql(custom_names))
  def payload({:query, _, sql}, _status, _settings_of), do: query(sql)
  def payload({:sql, nil}, _status, _settings_of), do: nil
  def payload({:sql, sql}, _status, _settings_of), do: query(sql)
  def payload(:rollback, ?I, _settings_of), do: nil
  def payload(:rollback, _status, _settings_of), do: query("ROLLBACK")
  def payload({:reply, _, _}, _status, _settings_of), do: nil
  def payload({:notify, _, _, to, notifications}, _status, _settings_of), do: query(Notifications.convert_sql(notifications, to))
  def payload({:look_up, waiter}, _status, _settings_of), do: query(Databases.check_sql(waiter.database))
  def payload({:switch, database}, _status, _settings_of), do: query(Databases.check_sql(database))

  def payload({:close, []}, _status, _settings_of), do: nil

  def payload({:close, statements}, _status, _settings_of),
    do: {[Enum.map(statements, &Wire.message(?C, [?S, &1, 0])), Wire.sync()], Enum.map(statements, fn _ -> ?C end) ++ ~c"S"}

  # Each Parse with a Sync of its own: one that fails now (its table dropped since)
  # does not make the backend skip the others.
  def payload({:reparse, _pid, parses}, _status, _settings_of),
    do: {Enum.map(parses, &[&1, Wire.sync()]), Enum.flat_map(parses, fn _ -> ~c"PS" end)}

  # Whatever a vanished client left running (COPY IN, an extended sequence, a
  # transaction) ends here: CopyFail and Sync are harmless when there is nothing to
  # end. An idle probe written behind them says when every reply to them has come,
  # whatever the session left (a marker row, as before, never came when a fuzzed
  # client had left a statement_timeout that canceled the marker's query).
  def payload({:barrier, _token}, _status, _settings_of) do
    {[Wire.message(?f, ["client went away", 0]), Wire.sync(), Wire.query("ROLLBACK")], :barrier}
  end

  defp query(sql), do: {Wire.query(sql), ~c"Q"}
end
