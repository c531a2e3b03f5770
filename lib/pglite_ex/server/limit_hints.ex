defmodule PgliteEx.Server.LimitHints do
  @moduledoc """
  A HINT on a backend error that meets one of pglite's documented limits, so that the
  client reads why, not only what: a client encoding other than UTF8 and SQL_ASCII
  (`SET client_encoding`, `convert()`) fails because the PGlite build ships no
  conversion modules, with PostgreSQL's own error (`58P01` "could not access file
  "$libdir/utf8_and_iso8859_1""). Errors that already carry a hint, and every other
  message, pass unchanged.
  """

  alias PgliteEx.Wire

  @encoding_hint "pglite ships no encoding conversion modules: client encodings are UTF8 and SQL_ASCII only (README, Limits)"

  @doc "The backend's messages for a client (whole messages), with hints added."
  @spec add([binary()]) :: [binary()]
  def add(messages) do
    # On the path of every reply: a scan, and a new list only when there is an error.
    if Enum.any?(messages, &match?(<<?E, _::binary>>, &1)), do: Enum.map(messages, &hint/1), else: messages
  end

  defp hint(<<?E, len::32, body::binary-size(len - 4)>> = message) do
    fields = Wire.fields(body)

    if fields[?C] == "58P01" and not Map.has_key?(fields, ?H) and fields[?M] =~ ~r/\$libdir\/\w+_and_\w+/ do
      Wire.message(?E, [binary_part(body, 0, byte_size(body) - 1), ?H, @encoding_hint, 0, 0])
    else
      message
    end
  end

  defp hint(message), do: message
end
