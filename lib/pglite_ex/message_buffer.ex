defmodule PgliteEx.MessageBuffer do
  @moduledoc """
  Gathers the chunks of a byte stream until the message they start is whole, at a
  cost linear in its size.

  Appending each chunk to a binary and splitting it again (`buffer <> data`) copies
  the whole buffer on every chunk once it has been matched: a message of n bytes
  arriving in chunks of c bytes costs n²/2c, 18 s for an 8 MB parameter read from a
  Unix socket. Here chunks are kept as a list with their total size, and joined once
  there are as many bytes as the first incomplete message's header announces.

  The header is at `header_at`: 1 for tagged messages (type byte, then the 4-byte
  length that counts itself), 0 for the untagged start-up packet. Pure data.
  """

  defstruct chunks: [], size: 0, want: 1

  @typedoc """
  `chunks`: received and not yet joined, newest first; `size`: their bytes; `want`:
  the bytes needed before joining is worth it.
  """
  @type t :: %__MODULE__{chunks: [binary()], size: non_neg_integer(), want: non_neg_integer()}

  @doc "An empty buffer."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc """
  Adds a chunk. `{:ready, bytes, buffer}` when the bytes gathered hold at least the
  announced message (or enough to read a header): split them, then hand the rest back
  with `keep/2`. `{:wait, buffer}` otherwise.
  """
  @spec add(t(), binary()) :: {:ready, binary(), t()} | {:wait, t()}
  def add(%__MODULE__{} = buffer, chunk) do
    size = buffer.size + byte_size(chunk)

    if size >= buffer.want do
      {:ready, IO.iodata_to_binary(Enum.reverse([chunk | buffer.chunks])), new()}
    else
      {:wait, %{buffer | chunks: [chunk | buffer.chunks], size: size}}
    end
  end

  @doc """
  A buffer holding the unsplit rest left after the whole messages were taken, waiting
  for the size of the message it starts, read from its header at `header_at`.
  """
  @spec keep(binary(), 0 | 1) :: t()
  def keep("", _header_at), do: new()

  def keep(rest, header_at) do
    want =
      case rest do
        <<_::binary-size(header_at), len::32, _::binary>> -> max(len + header_at, byte_size(rest) + 1)
        _ -> header_at + 4
      end

    %__MODULE__{chunks: [rest], size: byte_size(rest), want: want}
  end

  @doc "Bytes held."
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{size: size}), do: size
end
