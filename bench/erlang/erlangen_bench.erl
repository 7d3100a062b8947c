%% Erlang/OTP reference figures for BENCHMARKS.md workloads W1-W5, printed
%% in the same format as Erlangen's benchmark programs.
%%   erl -noshell -pa DIR -eval 'erlangen_bench:local(), halt().'
%%   W5 needs two nodes: see run.sh.
-module(erlangen_bench).
-export([local/0, w5_server/0, w5_client/1]).

now_us() -> erlang:monotonic_time(microsecond).

secs(Us) -> Us / 1.0e6.

%% W1: one token, a count of Hops, around a ring of N processes.
ring(N, Hops) ->
    Self = self(),
    Pids = [spawn(fun() -> receive {next, Next} -> ring_loop(Next, Self) end end)
            || _ <- lists:seq(1, N)],
    Nexts = tl(Pids) ++ [hd(Pids)],
    [P ! {next, Q} || {P, Q} <- lists:zip(Pids, Nexts)],
    T0 = now_us(),
    hd(Pids) ! Hops,
    receive done -> ok end,
    T = now_us() - T0,
    [exit(P, kill) || P <- Pids],
    S = secs(T),
    io:format("W1 ring n=~p: ~p hops in ~.3f s, ~p msgs/s, ~.2f us/hop~n",
              [N, Hops, S, round(Hops / S), T / Hops]).

ring_loop(Next, Report) ->
    receive
        0 -> Report ! done, ring_loop(Next, Report);
        K -> Next ! K - 1, ring_loop(Next, Report)
    end.

%% W2: Pairs pairs ping-pong Msgs messages each (Msgs/2 round trips).
pingpong(Msgs, Pairs) ->
    Self = self(),
    RT = Msgs div 2,
    Pingers = [begin
                   Pong = spawn(fun pong/0),
                   spawn(fun() -> receive go -> ping(Pong, RT), Self ! done end end)
               end || _ <- lists:seq(1, Pairs)],
    T0 = now_us(),
    [P ! go || P <- Pingers],
    [receive done -> ok end || _ <- Pingers],
    T = now_us() - T0,
    S = secs(T),
    Total = Msgs * Pairs,
    io:format("W2 ping-pong pairs=~p: ~p messages in ~.3f s, ~p msgs/s, ~.2f us/msg~n",
              [Pairs, Total, S, round(Total / S), T / Total]).

pong() -> receive {From, I} -> From ! I, pong() end.

ping(Pong, 0) -> exit(Pong, kill), ok;
ping(Pong, N) -> Pong ! {self(), N}, receive _ -> ok end, ping(Pong, N - 1).

%% W3: spawn Count monitored processes that return at once; then keep
%% Alive processes blocked in a receive and measure their memory.
spawn_exit(Count, Alive) ->
    T0 = now_us(),
    spawn_window(Count, 0),
    T = now_us() - T0,
    io:format("W3 spawn: ~p spawns+exits in ~.3f s, ~.2f us/spawn~n",
              [Count, secs(T), T / Count]),
    erlang:garbage_collect(),
    M0 = erlang:memory(total),
    Pids = [spawn(fun() -> receive _ -> ok end end) || _ <- lists:seq(1, Alive)],
    M1 = erlang:memory(total),
    io:format("W3 alive: ~p blocked agents at once, resident ~p bytes/agent~n",
              [Alive, (M1 - M0) div Alive]),
    [exit(P, kill) || P <- Pids],
    ok.

%% At most 1000 spawns in flight, as the Rust benchmark does.
spawn_window(0, 0) -> ok;
spawn_window(0, Out) -> receive {'DOWN', _, _, _, _} -> spawn_window(0, Out - 1) end;
spawn_window(N, 1000) -> receive {'DOWN', _, _, _, _} -> spawn_window(N, 999) end;
spawn_window(N, Out) -> spawn_monitor(fun() -> ok end), spawn_window(N - 1, Out + 1).

%% W4: Senders processes each send PerSender messages to one receiver.
fan_in(PerSender, Senders) ->
    Self = self(),
    Total = PerSender * Senders,
    Rx = spawn(fun() -> count(Total), Self ! done end),
    Ss = [spawn(fun() -> receive go -> send_n(Rx, PerSender) end end)
          || _ <- lists:seq(1, Senders)],
    T0 = now_us(),
    [S ! go || S <- Ss],
    receive done -> ok end,
    T = now_us() - T0,
    S = secs(T),
    io:format("W4 fan-in senders=~p: ~p messages in ~.3f s, ~p msgs/s~n",
              [Senders, Total, S, round(Total / S)]).

count(0) -> ok;
count(N) -> receive _ -> count(N - 1) end.

send_n(_, 0) -> ok;
send_n(Rx, N) -> Rx ! N, send_n(Rx, N - 1).

local() ->
    ring(10, 1000000),
    ring(1000, 1000000),
    pingpong(1000000, 1),
    pingpong(1000000, 2),
    pingpong(1000000, 4),
    spawn_exit(100000, 10000),
    fan_in(1000000, 4).

%% W5 server node: registered echo and sink processes.
w5_server() ->
    register(echo, spawn(fun echo/0)),
    register(sink, spawn(fun sink/0)),
    receive stop -> ok end.

echo() -> receive {From, I} -> From ! I, echo() end.

sink() ->
    receive {From, N} -> count(N), From ! N end,
    sink().

%% W5 client: round trips to echo, then a stream of a million to sink.
w5_client([ServerNode]) ->
    Node = list_to_atom(ServerNode),
    Echo = {echo, Node},
    Sink = {sink, Node},
    [begin Echo ! {self(), I}, receive _ -> ok end end || I <- lists:seq(1, 1000)],
    RT = 100000,
    T0 = now_us(),
    rt_loop(Echo, RT),
    T = now_us() - T0,
    io:format("W5 round trip: ~p round trips in ~.3f s, ~.1f us each~n", [RT, secs(T), T / RT]),
    N = 1000000,
    T1 = now_us(),
    Sink ! {self(), N},
    send_n(Sink, N),
    receive N -> ok end,
    T2 = now_us() - T1,
    io:format("W5 stream: ~p messages in ~.3f s, ~p msgs/s~n", [N, secs(T2), round(N / secs(T2))]),
    halt().

rt_loop(_, 0) -> ok;
rt_loop(Echo, N) -> Echo ! {self(), N}, receive _ -> ok end, rt_loop(Echo, N - 1).
