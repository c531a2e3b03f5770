defmodule Pglite.ReportedParametersTest do
  @moduledoc """
  At start-up a client is told the backend's value of each setting it asked for, as
  on a server (`ISO, DMY` for `iso,dmy`, `UTF8` for `utf8`, `Europe/Rome` for
  `europe/rome`), and a setting the backend refuses is a FATAL error at connection
  with the server's words. Compared with a PostgreSQL server.
  """
  use ExUnit.Case, async: true
  import Pglite.TestClients

  @moduletag timeout: 120_000

  test "ParameterStatus at start-up reports the backend's values, as a server does" do
    {:ok, pg} = Pglite.start_link()
    {ours, theirs} = transcripts(pg, "reported_parameters")
    assert length(ours) == length(theirs), Enum.join(ours, "\n")

    # The server here is PostgreSQL 15, which replaced non-ASCII bytes of an
    # application_name with '?'; the backend is 17, which escapes them.
    for {line, server_line} <- Enum.zip(ours, theirs), not String.starts_with?(line, "application_name") do
      assert line == server_line
    end

    assert ~S(application_name 'café': reported 'caf\\xc3\\xa9') in ours
    assert "DateStyle '-c DateStyle=iso,dmy': reported 'ISO, DMY'" in ours
  end
end
