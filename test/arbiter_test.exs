defmodule PgliteEx.ArbiterTest do
  @moduledoc """
  The arbiter without a port: random interleavings of clients that register, submit
  (queries, transactions, failing statements, extended sequences, named statements,
  pings, pipelines, DEALLOCATE/DISCARD/RESET ALL),
  disconnect, cancel and let timers run out, against a stand-in for the backend that
  answers each frontend message as PostgreSQL's message loop does (errors in an
  extended sequence skip to its Sync; an idle probe is answered once everything before
  it is). After every event, and once everything has played out:

    * exactly one holder or none, and a client that holds is connected (or its
      request written ahead holds next);
    * nobody waits while the backend is free;
    * every reply reaches the client that asked (rows carry the asker's tag), in full:
      each Query and Sync it sent gets its ReadyForQuery;
    * every call is answered, every transaction ends (by its client or the idle
      timeout), and the model never believes the backend owes what it does not
      (no `wedge:` report).

  Seeded: a failure names its seed, and `ARBITER_SEED=n mix test test/arbiter_test.exs`
  plays it again; `ARBITER_RUNS=n` plays seeds 1..n (150 by default).
  """
  use ExUnit.Case, async: true
  alias PgliteEx.{Arbiter, Wire}
  alias PgliteEx.Server.Request

  @runs 150
  @steps 600
  @idle_reply <<0, "pglite:idle">>

  test "random interleavings of clients keep every invariant" do
    seeds =
      case System.get_env("ARBITER_SEED") do
        nil -> 1..String.to_integer(System.get_env("ARBITER_RUNS", "#{@runs}"))
        seed -> [String.to_integer(seed)]
      end

    for seed <- seeds, do: play(seed)
  end

  test "a client in a transaction holds the backend; the next waits, then runs" do
    world = world(1) |> connect(:a) |> connect(:b)
    world = world |> submit(:a, [query("BEGIN")]) |> settle()
    assert {:client, a} = world.arbiter.holder
    assert a == world.clients.a.pid
    world = submit(world, :b, [query("SELECT b:1")])
    assert world.clients.b.call != nil, "b waits in line"
    world = world |> submit(:a, [query("COMMIT")]) |> settle()
    assert world.clients.b.call == nil
    assert world.clients.b.rows == ["b:1"]
    assert world.arbiter.holder == nil
  end

  test "a failing extended sequence ends at its Sync and frees the backend" do
    world = world(2) |> connect(:a) |> connect(:b)
    world = world |> submit(:a, extended("FAIL")) |> submit(:b, [query("SELECT b:1")]) |> settle()
    assert world.clients.a.errors == 1
    assert world.clients.a.ready == 1
    assert world.clients.b.rows == ["b:1"]
    assert world.arbiter.holder == nil
  end

  test "a holder idle in its transaction while another waits is disconnected at the idle timeout" do
    world = world(3) |> connect(:a) |> connect(:b)
    world = world |> submit(:a, [query("BEGIN")]) |> settle() |> submit(:b, [query("SELECT b:1")]) |> settle()
    assert Map.has_key?(world.timers, :idle)
    world = world |> fire(:idle) |> settle()
    assert world.clients.a.gone == "25P03"
    assert world.clients.b.rows == ["b:1"]
  end

  test "a canceled waiting request is answered for the backend; the holder goes on" do
    world = world(4) |> connect(:a) |> connect(:b)
    world = world |> submit(:a, [query("BEGIN")]) |> settle() |> submit(:b, [query("SELECT b:1")])
    world = event(world, {:cancel, world.clients.b.id, world.clients.b.secret})
    assert {:canceled, "57014", _} = world.clients.b.answer
    assert world.arbiter.holder == {:client, world.clients.a.pid}
  end

  test "a holder that disconnects mid-transaction is cleaned up and the next client runs" do
    world = world(5) |> connect(:a) |> connect(:b)
    world = world |> submit(:a, [query("BEGIN")]) |> settle() |> submit(:b, [query("SELECT b:1")])
    world = world |> disconnect(:a) |> settle()
    assert world.clients.b.rows == ["b:1"]
    assert world.backend.status == ?I, "the departed client's transaction was rolled back"
  end

  test "DEALLOCATE ALL closes the sender's statements only, and answers with its tag" do
    world = world(6) |> connect(:a) |> connect(:b)
    world = world |> submit(:a, [parse("s1"), sync()]) |> settle() |> submit(:b, [parse("s1"), sync()]) |> settle()
    world = %{world | writes: []} |> submit(:a, [query("DEALLOCATE ALL")]) |> settle()
    # Then the session is read again (a capture), as after any session change.
    assert [substitute, _capture] = world.writes
    {:ok, sent, ""} = Wire.split(substitute)
    assert [{?C, <<?S, "c1_s1", 0>>, _}, {?Q, <<0>>, _}] = sent
    assert world.clients.a.tags == ["DEALLOCATE ALL"]
    assert world.clients.a.ready == 2
  end

  test "two DEALLOCATE ALL pipelined in one turn each get their own answer" do
    world = world(7) |> connect(:a) |> connect(:b)
    world = world |> submit(:a, [query("BEGIN")]) |> submit(:a, [query("DEALLOCATE ALL")]) |> submit(:a, [query("DEALLOCATE ALL")])
    world = world |> submit(:a, [query("COMMIT")]) |> settle()
    assert world.clients.a.tags == ["BEGIN", "DEALLOCATE ALL", "DEALLOCATE ALL", "COMMIT"]
    assert world.clients.a.ready == 4
  end

  ## Playing a random run

  defp play(seed) do
    :rand.seed(:exsss, {seed, seed * 7 + 1, seed * 13 + 2})
    world = Enum.reduce(1..@steps, world(seed), fn _, world -> step(world) end)
    world = finish(world, 0)

    for {name, c} <- world.clients, c.gone == nil do
      assert c.call == nil, "seed #{seed}: #{name}'s call is never answered"
      assert c.ready == c.owed, "seed #{seed}: #{name} got #{c.ready} ReadyForQuery of #{c.owed}"
    end

    assert world.arbiter.holder in [nil, :down], "seed #{seed}: the backend is still held: #{inspect(world.arbiter.holder)}"
  end

  # Random steps: client actions, port output, timers, now and then a crash.
  defp step(world) do
    world = %{world | now: world.now + :rand.uniform(50)}

    case :rand.uniform(1000) do
      n when n <= 30 -> connect(world, :"c#{map_size(world.clients)}")
      n when n <= 550 -> client_step(world)
      n when n <= 880 -> deliver_output(world)
      n when n <= 950 -> fire_any(world)
      n when n <= 980 -> cancel_any(world)
      n when n <= 997 -> disconnect_any(world)
      _ -> if world.arbiter.up, do: crash(world), else: world
    end
  end

  defp client_step(world) do
    case for({name, c} <- world.clients, c.gone == nil and c.id != nil and c.call == nil, do: name) do
      [] -> world
      names ->
        name = Enum.random(names)
        submit(world, name, random_payload(name))
    end
  end

  # Every row a query asks for carries its client's name: a row that reaches another
  # client went astray.
  defp random_payload(name) do
    tag = "#{name}:#{:rand.uniform(1000)}"

    Enum.random([
      [query("SELECT " <> tag)],
      [query("SELECT " <> tag)],
      [query("BEGIN")],
      [query("COMMIT")],
      [query("FAIL")],
      extended("SELECT " <> tag),
      extended("FAIL"),
      [sync()],
      [query("SELECT " <> tag), query("SELECT " <> tag <> "b")],
      extended("SELECT " <> tag) ++ extended("SELECT " <> tag <> "x"),
      [parse("s1", "SELECT 1"), sync()],
      [query(Enum.random(["DEALLOCATE ALL", "DISCARD ALL", "RESET ALL"]))]
    ])
  end

  # Everything plays out: clients end their transactions, output is delivered, timers
  # run out, until nothing is left to happen.
  defp finish(world, rounds) when rounds > 5_000, do: flunk("seed #{world.seed}: no end in sight: #{inspect(world.arbiter.holder)}")

  defp finish(world, rounds) do
    cond do
      world.backend.out != [] ->
        finish(deliver_output(world), rounds + 1)

      (commit = Enum.find(world.clients, fn {_, c} -> c.gone == nil and c.call == nil and c.in_transaction end)) != nil ->
        finish(submit(world, elem(commit, 0), [query("ROLLBACK")]), rounds + 1)

      world.timers != %{} ->
        {name, _} = Enum.min_by(world.timers, &elem(&1, 1))
        finish(fire(world, name), rounds + 1)

      true ->
        world
    end
  end

  ## The world: the arbiter, its clients, the stand-in backend, the timers

  defp world(seed) do
    arbiter = Arbiter.new([database: "postgres", idle_in_transaction_timeout: 1_000, env: []], [{"server_version", "17"}], 0)
    %{seed: seed, now: 0, arbiter: arbiter, clients: %{}, timers: %{}, monitors: MapSet.new(), backend: backend(), writes: []}
  end

  defp connect(world, name) do
    pid = spawn(fn -> Process.sleep(:infinity) end)
    secret = :rand.uniform(1_000_000)
    client = %{pid: pid, id: nil, secret: secret, call: nil, answer: nil, gone: nil, rows: [], tags: [], errors: 0, ready: 0, owed: 0, sent: 0, skip: 0, built: nil, in_transaction: false, request: nil}
    world = put_in(world.clients[name], %{client | call: {pid, make_ref()}})
    event(world, {:register, world.clients[name].call, secret, %{}, "postgres"})
  end

  # What the connection process sends: the messages as the client wrote them, made
  # ready as PgliteEx.Server.Connection makes them.
  defp submit(world, name, messages) do
    c = world.clients[name]
    {built, request} = Request.build(c.request, messages)
    from = {c.pid, make_ref()}
    # Each Query and Sync gets a ReadyForQuery: what the client is owed once this runs.
    # (but the one of deferred Parse messages sent ahead, which the client already had).
    sent = Enum.count(built.meta.kinds, &(&1 in ~c"QS")) - built.skip
    world = put_in(world.clients[name], %{c | call: from, request: request, built: built, sent: sent})
    event(world, {:submit, from, built.payload, built.meta})
  end

  defp disconnect(world, name) do
    c = world.clients[name]
    Process.exit(c.pid, :kill)
    world = put_in(world.clients[name].gone, :left)
    if MapSet.member?(world.monitors, c.pid), do: event(%{world | monitors: MapSet.delete(world.monitors, c.pid)}, {:client_down, c.pid}), else: world
  end

  defp disconnect_any(world) do
    case for({name, c} <- world.clients, c.gone == nil, do: name) do
      [] -> world
      names -> disconnect(world, Enum.random(names))
    end
  end

  defp cancel_any(world) do
    case for({_, c} <- world.clients, c.id != nil, do: c) do
      [] -> world
      clients ->
        c = Enum.random(clients)
        event(world, {:cancel, c.id, c.secret})
    end
  end

  defp crash(world), do: event(%{world | backend: backend()}, {:port_died, 9, ""})

  defp fire_any(world) do
    case Map.keys(world.timers) do
      [] -> world
      names -> fire(world, Enum.random(names))
    end
  end

  defp fire(world, name) do
    world = %{world | now: max(world.now, world.timers[name]), timers: Map.delete(world.timers, name)}
    event(world, {:timeout, name})
  end

  defp settle(world) do
    if world.backend.out == [], do: world, else: settle(deliver_output(world))
  end

  ## Events in, actions out, invariants

  defp event(world, event) do
    {actions, arbiter} = world.arbiter |> Arbiter.handle(event, world.now) |> Arbiter.take_actions()
    world = Enum.reduce(actions, %{world | arbiter: arbiter}, &act/2)
    check(world, event)
  end

  defp check(world, event) do
    a = world.arbiter
    where = "seed #{world.seed}, after #{inspect(event, limit: 5)}"

    case a.holder do
      nil ->
        if a.up do
          assert :queue.is_empty(a.queue) and a.chores == [], "#{where}: the backend is free while #{:queue.len(a.queue)} wait"
        end

      {:client, pid} ->
        assert Map.has_key?(a.clients, pid) or a.ahead != nil, "#{where}: a departed client holds the backend"

      {:chore, _, _} ->
        :ok

      :down ->
        refute a.up
    end

    world
  end

  defp act({:reply, {pid, _} = from, answer}, world) do
    {name, c} = Enum.find(world.clients, fn {_, c} -> c.pid == pid end)
    assert c.call == from, "seed #{world.seed}: a reply to a call #{name} is not making: #{inspect(answer)}"
    c = %{c | call: nil, answer: answer}

    c =
      case answer do
        {:ok, id, _parameters} -> %{c | id: id, request: %Request{id: id}}
        :ok -> %{c | owed: c.owed + c.sent, skip: c.skip + c.built.skip, request: Request.answered(c.request, c.built, :ok)}
        :idle -> %{c | owed: c.owed + 1, ready: c.ready + 1}
        # Acknowledged by the connection: its Parse messages go ahead of the next batch.
        :deferred -> %{c | owed: c.owed + 1, ready: c.ready + 1, request: Request.answered(c.request, c.built, :deferred)}
        {:canceled, _, _} -> %{c | owed: c.owed + 1, ready: c.ready + 1, errors: c.errors + 1, request: Request.answered(c.request, c.built, :not_run)}
        {:error, {:fatal, code, _}} -> %{c | gone: c.gone || code}
      end

    put_in(world.clients[name], c)
  end

  defp act({:send, pid, {:pglite_backend, raw}}, world) do
    {name, c} = Enum.find(world.clients, fn {_, c} -> c.pid == pid end)
    {:ok, messages, ""} = Wire.split(IO.iodata_to_binary(raw))

    c =
      Enum.reduce(messages, c, fn
        # The replies to deferred Parse messages, which the client already had.
        {?Z, _, _}, %{skip: skip} = c when skip > 0 -> %{c | skip: skip - 1}
        _, %{skip: skip} = c when skip > 0 -> c
        {?D, body, _}, c -> %{c | rows: c.rows ++ Wire.data_row(body)}
        {?C, body, _}, c -> %{c | tags: c.tags ++ [elem(Wire.cstring(body), 0)]}
        {?E, _, _}, c -> %{c | errors: c.errors + 1}
        {?Z, <<status>>, _}, c -> %{c | ready: c.ready + 1, in_transaction: status != ?I}
        _, c -> c
      end)

    for row <- c.rows, do: assert(String.starts_with?(row, "#{name}:"), "seed #{world.seed}: #{name} got a row not its own: #{row}")
    put_in(world.clients[name], c)
  end

  defp act({:send, pid, {:pglite_kick, code, _}}, world), do: mark_gone(world, pid, code)
  defp act({:send, pid, {:pglite_down, _}}, world), do: mark_gone(world, pid, "57P01")
  defp act({:monitor, pid}, world), do: %{world | monitors: MapSet.put(world.monitors, pid)}
  defp act({:demonitor, pid}, world), do: %{world | monitors: MapSet.delete(world.monitors, pid)}
  defp act({:start_timer, name, ms}, world), do: %{world | timers: Map.put(world.timers, name, world.now + ms)}
  defp act({:cancel_timer, name}, world), do: %{world | timers: Map.delete(world.timers, name)}
  defp act({:write, payload}, world) do
    bytes = IO.iodata_to_binary(payload)
    %{world | backend: run(world.backend, bytes), writes: world.writes ++ [bytes]}
  end
  defp act(:probe, world), do: %{world | backend: %{world.backend | out: world.backend.out ++ [:idle]}}
  defp act(:start_port, world), do: event(%{world | backend: backend()}, {:restarted, {:ok, [{"server_version", "17"}]}})
  defp act({:log, :error, "wedge" <> _ = message}, world), do: flunk("seed #{world.seed}: #{message}")
  defp act({:stop, reason}, world), do: flunk("seed #{world.seed}: the arbiter stops: #{inspect(reason)}")
  defp act({:kill, pid}, world), do: mark_gone(world, pid, "killed")
  defp act(_other, world), do: world

  defp mark_gone(world, pid, code) do
    case Enum.find(world.clients, fn {_, c} -> c.pid == pid end) do
      {name, c} -> put_in(world.clients[name], %{c | gone: c.gone || code})
      nil -> world
    end
  end

  ## The stand-in backend: PostgreSQL's message loop, answered at once

  defp backend, do: %{status: ?I, skipping: false, statement: nil, out: []}

  defp run(backend, bytes) do
    {:ok, messages, ""} = Wire.split(bytes)
    Enum.reduce(messages, backend, fn {tag, body, _}, b -> answer(b, tag, body) end)
  end

  defp answer(%{skipping: true} = b, ?S, _body), do: out(%{b | skipping: false}, [Wire.ready_for_query(b.status)])
  defp answer(%{skipping: true} = b, _tag, _body), do: b

  defp answer(b, ?Q, body) do
    {sql, _} = Wire.cstring(body)
    b = statement(b, sql)
    out(b, [Wire.ready_for_query(b.status)])
  end

  defp answer(b, ?P, body) do
    {_name, rest} = Wire.cstring(body)
    {sql, _} = Wire.cstring(rest)

    cond do
      sql == "FAIL" -> fail(%{b | statement: nil}) |> Map.put(:skipping, true)
      b.status == ?E -> fail(b) |> Map.put(:skipping, true)
      true -> out(%{b | statement: sql}, [Wire.message(?1, "")])
    end
  end

  defp answer(b, ?B, _body), do: out(b, [Wire.message(?2, "")])
  defp answer(b, ?D, _body), do: out(b, [Wire.message(?n, "")])
  defp answer(b, ?C, _body), do: out(b, [Wire.message(?3, "")])

  defp answer(b, ?E, _body) do
    case b.statement do
      "SELECT " <> tag -> out(b, [row(tag), complete("SELECT 1")])
      _ -> out(b, [complete("OK")])
    end
  end

  defp answer(b, ?S, _body), do: out(b, [Wire.ready_for_query(b.status)])
  defp answer(b, _tag, _body), do: b

  defp statement(b, sql) do
    case {b.status, sql} do
      {?I, "BEGIN"} -> out(%{b | status: ?T}, [complete("BEGIN")])
      {_, "BEGIN"} -> out(b, [complete("BEGIN")])
      {?E, "COMMIT"} -> out(%{b | status: ?I}, [complete("ROLLBACK")])
      {_, end_} when end_ in ["COMMIT", "ROLLBACK"] -> out(%{b | status: ?I}, [complete(end_)])
      {?E, _} -> fail(b)
      {_, "FAIL"} -> fail(b)
      {_, "SELECT " <> tag} -> out(b, [row(tag), complete("SELECT 1")])
      _ -> out(b, [complete("OK")])
    end
  end

  defp fail(b), do: out(%{b | status: if(b.status == ?I, do: ?I, else: ?E)}, [Wire.error("ERROR", "XX000", "failed")])
  defp row(tag), do: Wire.message(?D, <<1::16, byte_size(tag)::32, tag::binary>>)
  defp complete(tag), do: Wire.message(?C, [tag, 0])
  defp out(b, messages), do: %{b | out: b.out ++ [{:bytes, IO.iodata_to_binary(messages)}]}

  # The port's output in random pieces: a frame may end inside a message.
  defp deliver_output(%{backend: %{out: []}} = world), do: world

  defp deliver_output(%{backend: %{out: [:idle | rest]} = b} = world),
    do: event(%{world | backend: %{b | out: rest}}, {:port_data, @idle_reply})

  defp deliver_output(%{backend: %{out: [{:bytes, bytes} | rest]} = b} = world) do
    cut = if :rand.uniform(4) == 1, do: :rand.uniform(byte_size(bytes)), else: byte_size(bytes)
    <<piece::binary-size(cut), left::binary>> = bytes
    out = if left == "", do: rest, else: [{:bytes, left} | rest]
    event(%{world | backend: %{b | out: out}}, {:port_data, piece})
  end

  ## Frontend messages, as a client writes them

  defp query(sql), do: message(?Q, [sql, 0])
  defp parse(name, sql \\ "SELECT 1"), do: message(?P, [name, 0, sql, 0, <<0::16>>])
  defp sync, do: message(?S, "")

  defp extended(sql) do
    [
      message(?P, ["", 0, sql, 0, <<0::16>>]),
      message(?B, ["", 0, "", 0, <<0::16, 0::16, 0::16>>]),
      message(?D, [?P, "", 0]),
      message(?E, ["", 0, <<0::32>>]),
      sync()
    ]
  end

  defp message(tag, body) do
    body = IO.iodata_to_binary(body)
    {tag, body, IO.iodata_to_binary(Wire.message(tag, body))}
  end
end
