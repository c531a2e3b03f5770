defmodule PgliteEx.Words do
  @moduledoc """
  Whether an SQL text contains any of a few words, in any ASCII case: the cheap first
  look that lets the front end skip its regexes on most texts.

  Every ASCII spelling of the words goes into one compiled pattern, so the text is
  searched as it is: lowering a copy of it first, as this did before, cost ~10x the
  search itself (~2 µs of ~2.2 for pgbench's `-S` query). A word longer than five
  letters is looked for by its first five (32 spellings, not 2^n): a text with
  `deall` in it counts as having `deallocate`. Callers use the answer as a first look
  before a closer one, so a false "maybe" only costs that closer look; "no" is sure.
  """

  # Longer words are looked for by this many first letters.
  @prefix 5

  @doc """
  True when `text` may contain one of `words` (lowercase ASCII) in any case: it
  contains one, or the first five letters of a longer one. `set` names the list: its
  pattern is compiled on first use and kept for the VM's lifetime.
  """
  @spec any?(binary(), atom(), [String.t()]) :: boolean()
  def any?(text, set, words), do: :binary.match(text, pattern(set, words)) != :nomatch

  # A compiled pattern cannot be a module attribute; each set is compiled once per VM,
  # and looked up by its name (a lookup keyed by the list hashed the whole list).
  defp pattern(set, words) do
    case :persistent_term.get({__MODULE__, set}, nil) do
      nil ->
        pattern =
          words
          |> Enum.map(&binary_part(&1, 0, min(byte_size(&1), @prefix)))
          |> Enum.uniq()
          |> Enum.flat_map(&case_variants/1)
          |> :binary.compile_pattern()

        :persistent_term.put({__MODULE__, set}, pattern)
        pattern

      pattern ->
        pattern
    end
  end

  @doc false
  # "set" -> "set", "seT", "sEt", ... "SET": 2^n spellings of a word of n letters.
  @spec case_variants(String.t()) :: [String.t()]
  def case_variants(word) do
    for <<char <- word>>, reduce: [""] do
      spellings ->
        for prefix <- spellings, c <- Enum.uniq([char, upcase(char)]), do: <<prefix::binary, c>>
    end
  end

  defp upcase(char) when char in ?a..?z, do: char - 32
  defp upcase(char), do: char
end
