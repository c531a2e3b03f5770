defmodule PgliteEx.Server.StatementsTest do
  @moduledoc "Per-client names on the way in, and what a batch leaves open."
  use ExUnit.Case, async: true
  alias PgliteEx.Server.Statements
  alias PgliteEx.Wire

  defp msg(tag, body), do: {tag, IO.iodata_to_binary(body), Wire.message(tag, body)}
  defp names(batch), do: batch.payload |> IO.iodata_to_binary() |> Wire.split() |> elem(1) |> Enum.map(fn {t, b, _} -> {t, b} end)

  test "DEALLOCATE in SQL of a statement prepared through the protocol names the client's statement; SQL-prepared names and ALL stay" do
    keep = MapSet.new([{:statement, "mine"}])
    query = fn sql -> Statements.rewrite([msg(?Q, [sql, 0])], 7, false, keep) end

    batch = query.("DEALLOCATE _pg3_0")
    assert [{?Q, ~s(DEALLOCATE "c7__pg3_0"\0)}] = names(batch)
    assert batch.closed == ["c7__pg3_0"]
    assert [{?Q, ~s(DEALLOCATE "c7_Odd""Name"\0)}] = names(query.(~s(deallocate prepare "Odd""Name";)))
    assert [{?Q, "DEALLOCATE mine\0"}] = names(query.("DEALLOCATE mine"))
    assert [{?Q, "DEALLOCATE ALL\0"}] = names(query.("DEALLOCATE ALL"))
    assert [{?Q, "SELECT 1; DEALLOCATE s1\0"}] = names(query.("SELECT 1; DEALLOCATE s1"))
  end

  test "named statements and portals get the client's prefix; unnamed ones and names made in SQL do not" do
    keep = MapSet.new([{:portal, "big"}, {:statement, "q"}])

    batch =
      Statements.rewrite(
        [
          msg(?P, ["s1", 0, "SELECT 1", 0, <<0::16>>]),
          msg(?B, ["p1", 0, "s1", 0, <<0::16, 0::16, 0::16>>]),
          msg(?B, ["", 0, "q", 0, <<0::16, 0::16, 0::16>>]),
          msg(?D, [?P, "big", 0]),
          msg(?E, ["big", 0, <<10::32>>]),
          msg(?C, [?S, "s1", 0]),
          msg(?S, [])
        ],
        7,
        false,
        keep
      )

    assert [
             {?P, "c7_s1" <> _},
             {?B, "c7_p1\0c7_s1\0" <> _},
             {?B, "\0q\0" <> _},
             {?D, "Pbig\0"},
             {?E, "big\0" <> _},
             {?C, "Sc7_s1\0"},
             {?S, ""}
           ] = names(batch)

    assert [{"c7_s1", "P" <> _}] = batch.prepared
    assert batch.closed == ["c7_s1"]
    refute batch.open
  end

  test "a sequence stays open until its Sync; a Flush neither opens nor closes one" do
    parse = msg(?P, ["", 0, "SELECT 1", 0, <<0::16>>])
    assert Statements.rewrite([parse, msg(?H, [])], 1, false).open
    refute Statements.rewrite([parse, msg(?S, []), msg(?H, [])], 1, false).open
    refute Statements.rewrite([msg(?H, [])], 1, false).open
    assert Statements.rewrite([msg(?H, [])], 1, true).open
  end
end
