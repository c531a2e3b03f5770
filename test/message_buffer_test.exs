defmodule Pglite.MessageBufferTest do
  @moduledoc """
  A large message arriving in many chunks is joined once, when its last byte is in,
  not copied again with every chunk (bench/large_messages.exs times it).
  """
  use ExUnit.Case, async: true
  alias PgliteEx.{MessageBuffer, Wire}

  defp feed(buffer, chunks, header_at) do
    Enum.reduce(chunks, {buffer, [], 0}, fn chunk, {buffer, got, joins} ->
      case MessageBuffer.add(buffer, chunk) do
        {:wait, buffer} ->
          {buffer, got, joins}

        {:ready, bytes, _} ->
          {:ok, messages, rest} = if header_at == 1, do: Wire.split(bytes), else: {:ok, [], bytes}
          {MessageBuffer.keep(rest, header_at), got ++ messages, joins + 1}
      end
    end)
  end

  test "a message split into many chunks is joined once, when it is whole" do
    body = :crypto.strong_rand_bytes(1_000_000)
    message = Wire.message(?B, body)
    chunks = for <<chunk::binary-size(1000) <- message>>, do: chunk
    rest = binary_part(message, div(byte_size(message), 1000) * 1000, rem(byte_size(message), 1000))

    # The header alone makes it join once, to learn the size; then only the last chunk.
    {buffer, got, joins} = feed(MessageBuffer.new(), chunks ++ [rest], 1)
    assert [{?B, ^body, ^message}] = got
    assert joins == 2
    assert MessageBuffer.size(buffer) == 0
  end

  test "a header split over chunks, and the start of the next message, are kept" do
    one = Wire.message(?Q, "SELECT 1\0")
    two = Wire.message(?Q, "SELECT 2\0")
    <<a::binary-size(3), b::binary>> = one <> binary_part(two, 0, 7)

    {buffer, got, _} = feed(MessageBuffer.new(), [a, b], 1)
    assert [{?Q, "SELECT 1\0", _}] = got
    assert MessageBuffer.size(buffer) == 7

    {_, got, _} = feed(buffer, [binary_part(two, 7, byte_size(two) - 7)], 1)
    assert [{?Q, "SELECT 2\0", _}] = got
  end

  test "an untagged start-up packet's length is read at offset 0" do
    packet = <<16::32, 196_608::32, "user", 0, "u", 0, 0>>
    buffer = MessageBuffer.keep(binary_part(packet, 0, 6), 0)
    assert {:wait, buffer} = MessageBuffer.add(buffer, binary_part(packet, 6, 5))
    assert {:ready, ^packet, _} = MessageBuffer.add(buffer, binary_part(packet, 11, 5))
  end
end
