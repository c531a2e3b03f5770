defmodule PgliteEx.Server.RequestTest do
  @moduledoc """
  How a client's batch is made ready for the shared backend, without a port: names
  made per client, a Terminate ending the batch, Parse messages acknowledged earlier
  going first with a Sync whose reply is dropped, the notes the arbiter reads.
  """
  use ExUnit.Case, async: true
  alias PgliteEx.Server.Request
  alias PgliteEx.Wire

  defp message(tag, body) do
    body = IO.iodata_to_binary(body)
    {tag, body, IO.iodata_to_binary(Wire.message(tag, body))}
  end

  defp query(sql), do: message(?Q, [sql, 0])
  defp parse(name, sql), do: message(?P, [name, 0, sql, 0, <<0::16>>])
  defp sync, do: message(?S, "")
  defp tags(payload), do: payload |> IO.iodata_to_binary() |> Wire.split() |> elem(1) |> Enum.map(&elem(&1, 0))

  test "a plain query surely ends its turn and can be answered for the backend when canceled" do
    {built, _} = Request.build(%Request{id: 3}, [query("SELECT 1")])
    assert %{kinds: ~c"Q", ends_turn: true, cancellable: true, session: false, open: false} = built.meta
    refute built.terminate
  end

  test "a Terminate ends the batch: what comes before it is sent, then the connection closes" do
    {built, _} = Request.build(%Request{id: 3}, [query("SELECT 1"), message(?X, ""), query("SELECT 2")])
    assert built.terminate
    assert tags(built.payload) == ~c"Q"
  end

  test "named statements become the client's own; a transaction's start does not end the turn" do
    {built, request} = Request.build(%Request{id: 7}, [parse("s1", "BEGIN"), sync()])
    assert [{"c7_s1", "P" <> _ = parse}] = built.meta.prepared
    assert IO.iodata_to_binary(built.payload) =~ parse
    refute built.meta.ends_turn
    assert MapSet.member?(request.risky, "s1")
  end

  test "a deferred Parse goes ahead of the next batch with its own Sync, whose ReadyForQuery is dropped" do
    {built, request} = Request.build(%Request{id: 7}, [parse("s1", "SELECT 1"), sync()])
    assert built.meta.deferrable
    request = Request.answered(request, built, :deferred)
    {next, request} = Request.build(request, [query("SELECT 2")])
    assert tags(next.payload) == ~c"PSQ"
    assert next.skip == 1 and next.meta.kinds == ~c"PSQ"
    assert [{"c7_s1", "P" <> _}] = next.meta.prepared, "in the backend with this batch"
    assert Request.answered(request, next, :ok).deferred == []
  end

  test "DEALLOCATE ALL asks for the client's own statements, SQL ones included, and forgets their SQL names" do
    {_, request} = Request.build(%Request{id: 7}, [query("PREPARE mine AS SELECT 1")])
    assert MapSet.member?(request.sql_names, {:statement, "mine"})
    {built, request} = Request.build(request, [query("deallocate  all ;")])
    assert built.meta.reset == {:deallocate_all, ["mine"], {[], []}, []}
    assert request.sql_names == MapSet.new()
    {built, _} = Request.build(request, [query("DEALLOCATE ALL"), query("SELECT 1")])
    refute Map.has_key?(built.meta, :reset), "only alone in its Query"
  end

  test "DEALLOCATE ALL through the extended protocol is the client's own too, answered as the server answers each message" do
    bind = fn params -> message(?B, ["", 0, "", 0, <<0::16, length(params)::16>>, Enum.map(params, &<<byte_size(&1)::32, &1::binary>>), <<0::16>>]) end
    describe = message(?D, ["P", "", 0])
    execute = message(?E, ["", 0, <<0::32>>])
    {built, _} = Request.build(%Request{id: 7}, [parse("", "DEALLOCATE ALL"), bind.([]), describe, execute, sync()])
    assert {:deallocate_all, [], {[], []}, front} = built.meta.reset
    assert Enum.map(front, &elem(&1, 0)) == ~c"12n"
    {built, _} = Request.build(%Request{id: 7}, [parse("", "DEALLOCATE ALL"), bind.(["1"]), execute, sync()])
    refute Map.has_key?(built.meta, :reset), "a Bind with parameters fails on a server: sent as written"
    {built, _} = Request.build(%Request{id: 7}, [parse("", "DEALLOCATE ALL"), bind.([]), execute, execute, sync()])
    refute Map.has_key?(built.meta, :reset), "only one execution"
    {built, _} = Request.build(%Request{id: 7}, [parse("s1", "RESET ALL"), bind.([]), execute, sync()])
    refute Map.has_key?(built.meta, :reset), "a named statement outlives RESET ALL: sent as written"
  end

  test "a DISCARD ALL behind deferred Parse messages keeps them ahead of its substitute" do
    {built, request} = Request.build(%Request{id: 7}, [parse("s1", "SELECT 1"), sync()])
    request = Request.answered(request, built, :deferred)
    {built, _} = Request.build(request, [query("DISCARD ALL")])
    assert {:discard_all, [], {ahead, ~c"PS"}, []} = built.meta.reset
    assert tags(ahead) == ~c"PS"
    assert built.meta.kinds == ~c"PSQ" and built.skip == 1
  end
end
