defmodule PgliteEx.OutputFlow do
  @moduledoc """
  Back-pressure for a client that stops reading. The port writes as fast as the
  backend produces; a client that does not read would have its replies pile up in the
  BEAM without bound (2.9 GB in 30 s for `SELECT generate_series(1, 50000000)`). So
  every byte handed to a client counts against it until its connection says it was
  written to the socket (`{:pglite_sent, pid, bytes}`, every `ack_every/0` bytes), and
  while the holder of the backend has more than `high/0` bytes unwritten, the port is
  asked to hold its output (a PauseOutput packet): the backend blocks in its write,
  as a server's backend blocks on the socket of a client that does not read. Below
  `low/0` it resumes. If others wait meanwhile, the holder is disconnected after the
  idle timeout, as one that holds the backend idle.

  Pure data: no process, no port.
  """

  @high 8 * 1024 * 1024
  @low 2 * 1024 * 1024
  @ack_every 64 * 1024

  @doc "Bytes unwritten above which the holder's output is held."
  @spec high() :: pos_integer()
  def high, do: @high

  @doc "Bytes unwritten below which held output flows again."
  @spec low() :: pos_integer()
  def low, do: @low

  @doc "How many written bytes a connection gathers before it reports them."
  @spec ack_every() :: pos_integer()
  def ack_every, do: @ack_every

  @doc "The bytes of a list of raw messages."
  @spec bytes([binary()]) :: non_neg_integer()
  def bytes(messages), do: Enum.reduce(messages, 0, &(byte_size(&1) + &2))

  @doc """
  What to do about the port's output: `:pause`, `:resume` or `:none`, given whether it
  is `paused` now and the holder's unwritten bytes (nil when no client holds).
  """
  @spec decide(boolean(), non_neg_integer() | nil) :: :pause | :resume | :none
  def decide(false, unwritten) when is_integer(unwritten) and unwritten > @high, do: :pause
  def decide(true, unwritten) when not is_integer(unwritten) or unwritten < @low, do: :resume
  def decide(_paused, _unwritten), do: :none
end
