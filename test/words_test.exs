defmodule PgliteEx.WordsTest do
  @moduledoc "The first look for words that make an SQL text worth a closer one."
  use ExUnit.Case, async: true
  alias PgliteEx.Words

  @words ~w(begin copy deallocate)

  test "a word is found in any ASCII case, anywhere in the text; a long one by its first five letters" do
    for text <- [
          "BEGIN",
          "begin;",
          "  BeGiN ISOLATION LEVEL SERIALIZABLE",
          "\\copy t",
          "COPY t FROM STDIN",
          "DEALLOCATE ALL",
          "x dEaLlOcAtE",
          "DEALL"
        ] do
      assert Words.any?(text, :words_test, @words), text
    end

    for text <- [
          "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
          "",
          "BEGI N",
          "cop y",
          "déallocate",
          "dea llocate"
        ] do
      refute Words.any?(text, :words_test, @words), text
    end
  end

  test "every spelling of a word is searched for, and only those" do
    spellings = Words.case_variants("ab1")
    assert Enum.sort(spellings) == Enum.sort(["ab1", "aB1", "Ab1", "AB1"])
    assert length(Words.case_variants("deallocate")) == 1024
  end
end
