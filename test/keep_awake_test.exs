defmodule PgliteEx.KeepAwakeTest do
  # Whether the helper runs or sleeps, read from the VM: no timing is asserted.
  use ExUnit.Case, async: true

  alias PgliteEx.KeepAwake

  defp status(pid), do: Process.info(pid, :status) |> elem(1)

  defp eventually(pid, wanted, tries \\ 200) do
    cond do
      status(pid) in wanted -> true
      tries == 0 -> false
      true -> Process.sleep(5) && eventually(pid, wanted, tries - 1)
    end
  end

  test "a poked helper keeps running until told to rest" do
    pid = KeepAwake.start(10_000_000)
    assert eventually(pid, [:waiting])
    KeepAwake.poke(pid)
    # It yields in a loop: runnable or running, never waiting, while the window lasts.
    samples = for _ <- 1..20, do: Process.sleep(1) && status(pid)
    refute :waiting in samples
    KeepAwake.rest(pid)
    assert eventually(pid, [:waiting])
  end

  test "a spin ends by itself when the window runs out" do
    pid = KeepAwake.start(2_000)
    KeepAwake.poke(pid)
    assert eventually(pid, [:waiting])
  end

  test "a request is waited for busily when its client is alone with the backend" do
    {a, b} = {spawn(fn -> :ok end), spawn(fn -> :ok end)}
    assert KeepAwake.alone?(a, a, ?I), "it follows the client's own request"
    refute KeepAwake.alone?(a, b, ?I), "clients taking turns: the schedulers are busy anyway"
    refute KeepAwake.alone?(a, nil, ?I)
    # Inside its transaction nobody else can run: the first request after its turn
    # began (its BEGIN written to the port behind b's request) is alone too.
    assert KeepAwake.alone?(a, b, ?T)
    assert KeepAwake.alone?(a, b, ?E)
  end

  test "a window of 0 starts nothing, and pokes and rests do nothing" do
    assert KeepAwake.start(0) == nil
    assert KeepAwake.poke(nil) == :ok
    assert KeepAwake.rest(nil) == :ok
  end

  test "the helper ends with its owner" do
    parent = self()
    owner = spawn(fn -> send(parent, {:helper, KeepAwake.start(100_000)}) && receive(do: (:stop -> :ok)) end)
    assert_receive {:helper, pid}
    ref = Process.monitor(pid)
    send(owner, :stop)
    assert_receive {:DOWN, ^ref, :process, ^pid, :normal}
  end

  test "busy_wait_us is checked like every other option" do
    assert {:error, {:invalid_option, {:busy_wait_us, -1}}} = Pglite.start_link(busy_wait_us: -1)
    assert {:error, {:invalid_option, {:busy_wait_us, 100_001}}} = Pglite.start_link(busy_wait_us: 100_001)
    assert {:error, {:invalid_option, {:busy_wait_us, "1"}}} = Pglite.start_link(busy_wait_us: "1")
  end
end
