%% One member of a cluster-scale run, the Erlang/OTP side of
%% bench/cluster-scale.py; the same event lines and commands as
%% `erlangen-cluster-benchmark member` (see tools/src/bin/erlangen-cluster-benchmark.rs).
%%
%%   erl -sname nK -setcookie C -noshell -kernel start_pg true \
%%       -pa DIR -eval 'cluster_member:start("n0")'
%%
%% Prints `pid OSPID`, `up NS`, `members COUNT NS` on each change of the
%% member count (net_kernel:monitor_nodes/1), `down NODE NS` on each
%% nodedown; reads `register NAME`, `join GROUP`, `watch-global NAME`,
%% `watch-group GROUP` (a poller that prints `watching-global NAME NS` or
%% `watching-group GROUP NS` as it starts, then `seen-...` once the name or
%% a member is visible) and `quit` on stdin. Timestamps are
%% os:system_time(nanosecond): the OS wall clock, as the driver's.
-module(cluster_member).
-export([start/1]).

now_ns() -> os:system_time(nanosecond).

event(Fmt, Args) ->
    io:format(Fmt ++ " ~b~n", Args ++ [now_ns()]).

start(SeedName) ->
    io:format("pid ~s~n", [os:getpid()]),
    Self = self(),
    spawn_link(fun() ->
        ok = net_kernel:monitor_nodes(true),
        Self ! subscribed,
        monitor_loop(sets:new())
    end),
    receive subscribed -> ok end,
    event("up", []),
    [_, Host] = string:split(atom_to_list(node()), "@"),
    Seed = list_to_atom(SeedName ++ "@" ++ Host),
    case Seed =:= node() of
        true -> ok;
        false -> contact(Seed, 600)
    end,
    command_loop().

contact(Seed, 0) ->
    event("error contact ~s no-member-after-60s", [Seed]);
contact(Seed, Tries) ->
    case net_adm:ping(Seed) of
        pong -> ok;
        pang -> timer:sleep(100), contact(Seed, Tries - 1)
    end.

monitor_loop(Members) ->
    receive
        {nodeup, Node} ->
            changed(Members, sets:add_element(Node, Members));
        {nodedown, Node} ->
            event("down ~s", [Node]),
            changed(Members, sets:del_element(Node, Members));
        _ ->
            monitor_loop(Members)
    end.

changed(Old, New) ->
    case sets:size(New) =/= sets:size(Old) of
        true -> event("members ~b", [sets:size(New)]);
        false -> ok
    end,
    monitor_loop(New).

holder() ->
    spawn(fun() -> receive stop -> ok end end).

command_loop() ->
    case io:get_line("") of
        eof -> erlang:halt(0);
        {error, _} -> erlang:halt(0);
        Line ->
            case string:lexemes(string:trim(Line), " \t") of
                ["quit" | _] -> erlang:halt(0);
                ["register", Name] ->
                    case global:register_name(list_to_atom(Name), holder()) of
                        yes -> event("registered ~s", [Name]);
                        no -> event("error register ~s taken", [Name])
                    end;
                ["join", Group] ->
                    ok = pg:join(list_to_atom(Group), holder()),
                    event("joined ~s", [Group]);
                ["watch-global", Name] ->
                    N = list_to_atom(Name),
                    watch("global", Name,
                          fun() -> global:whereis_name(N) =/= undefined end);
                ["watch-group", Group] ->
                    G = list_to_atom(Group),
                    watch("group", Group,
                          fun() -> pg:get_members(G) =/= [] end);
                [] -> ok;
                Other -> event("error unknown-command ~s", [string:join(Other, "_")])
            end,
            command_loop()
    end.

%% Polls every millisecond (the finest timer:sleep/1 can do).
watch(Kind, Name, Visible) ->
    spawn(fun() ->
                  event("watching-~s ~s", [Kind, Name]),
                  poll("seen-" ++ Kind, Name, Visible)
          end).

poll(Label, Name, Visible) ->
    case Visible() of
        true -> event("~s ~s", [Label, Name]);
        false -> timer:sleep(1), poll(Label, Name, Visible)
    end.
