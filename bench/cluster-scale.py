#!/usr/bin/env python3
"""Cluster scale: Erlangen and Erlang/OTP clusters of N member processes on
one host, side by side (Python 3 standard library only).

    python3 bench/cluster-scale.py [--n "10 25 50"] [--runs 3] [--idle-s 20]
                                   [--bin-dir target/release]
                                   [--systems erlangen,erlang]

Each run starts a fresh port mapper (Erlangen) or epmd (Erlang, on a port of
its own) and cookie in a temporary directory, then N members: n0 first
(waiting for its `up`), then the others at once, each contacting n0. The
members are `erlangen-cluster-benchmark member` and
`bench/erlang/cluster_member.erl`; both print timestamped event lines (ns
since the Unix epoch) and take commands on stdin. Measured per run:

  mesh ms       from the last member's `up` until every member printed
                `members N-1`
  RSS MiB/node  mean VmRSS of a member, 2 s after the mesh formed
  threads/node  mean OS threads of a member, then
  idle CPU %    utime+stime of all members together over --idle-s seconds,
                as % of one core (/proc/PID/stat, 10 ms ticks); "(ns)": the
                same from /proc/PID/task/*/schedstat, in nanoseconds
  global ms     `register boss` on n1, every other member polling for it:
                until the last `seen-global`, from n1's `registered` line
                (reg) and from the moment the command was sent (send)
  group ms      the same with `join workers` and `seen-group`
  down ms       from `kill -9` of the last member until the last other
                member printed its `down` line

and a table per N: median [min-max] over the runs. Every process started is
killed on every way out (normal end, error, Ctrl-C, SIGTERM).
"""

import argparse
import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCS = []  # every Popen started, killed at exit
LOCK = threading.Condition()  # guards every member's events


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in PROCS:
        try:
            p.wait(timeout=5)
        except Exception:
            pass
    PROCS.clear()


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


def spawn(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    PROCS.append(p)
    return p


def log(*a):
    print(*a, flush=True)


class Member:
    """A member process: its event lines, parsed as they come."""

    def __init__(self, name, argv, errpath, env=None):
        self.name = name
        self.errpath = errpath
        self.err = open(errpath, "w")
        self.p = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=self.err, env=env, text=True, bufsize=1)
        self.ospid = self.p.pid
        self.events = []  # (kind, [args], ns)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            w = line.split()
            if len(w) >= 2 and w[0] == "pid" and w[1].isdigit():
                self.ospid = int(w[1])
                continue
            if len(w) < 2 or not w[-1].isdigit():
                continue  # a log line, not an event
            with LOCK:
                self.events.append((w[0], w[1:-1], int(w[-1])))
                LOCK.notify_all()
        with LOCK:
            self.events.append(("exit", [], time.time_ns()))
            LOCK.notify_all()

    def send(self, line):
        try:
            self.p.stdin.write(line + "\n")
            self.p.stdin.flush()
        except OSError:
            pass

    def first(self, kind, args=None):
        """ns of the first event of this kind (and args), or None."""
        for k, a, ns in self.events:
            if k == kind and (args is None or a == args):
                return ns
        return None

    def errors(self):
        return [(k, a) for k, a, _ in self.events if k == "error"]

    def stop(self):
        self.send("quit")

    def tail(self, n=3):
        try:
            self.err.flush()
            with open(self.errpath) as f:
                return f.read().splitlines()[-n:]
        except OSError:
            return []


def wait_all(members, fn, timeout):
    """Waits until fn(m) is not None for every member; returns the values,
    or None on timeout."""
    deadline = time.monotonic() + timeout
    with LOCK:
        while True:
            vals = [fn(m) for m in members]
            if all(v is not None for v in vals):
                return vals
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            LOCK.wait(min(left, 0.5))


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    rss = int(out.get("VmRSS", "0 kB").split()[0]) / 1024.0
    return rss, int(out.get("Threads", "0"))


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        rest = s[s.rfind(")") + 2:].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError, ValueError):
        return 0


def run_ns(pid):
    """CPU time of every live thread of pid in ns (/proc/PID/task/*/schedstat),
    finer than the 10 ms ticks of /proc/PID/stat."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                pass
    except OSError:
        pass
    return total


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Erlangen:
    label = "erlangen"
    tick = None

    def __init__(self, bindir):
        self.pm = os.path.join(bindir, "erlangen-port-mapper")
        self.bench = os.path.join(bindir, "erlangen-cluster-benchmark")
        for b in (self.pm, self.bench):
            if not os.access(b, os.X_OK):
                sys.exit(f"cluster-scale: {b} missing (make cluster-scale builds it)")

    def setup(self, tmp):
        self.tmp = tmp
        self.cookie = os.path.join(tmp, "cookie")
        fd = os.open(self.cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.close(fd)
        env = dict(os.environ)
        env.pop("ERLANGEN_REGISTRY_PORT", None)
        env.pop("ERLANGEN_DIRECTORY_PORT", None)
        p = spawn([self.pm, "localhost", "--registry-port", "0", "--directory-port", "0"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        line = p.stderr.readline()
        m = re.search(r"registry on \S+?:(\d+).*directory on \S+?:(\d+)", line)
        if not m:
            raise RuntimeError(f"port mapper did not start: {line.strip()}")
        self.registry, self.directory = m.group(1), m.group(2)
        # Keep reading its log so that it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()

    def member(self, name, seed):
        argv = [self.bench, "member", "--name", name, "--seed", seed,
                "--registry-port", self.registry, "--directory-port", self.directory,
                "--cookie-file", self.cookie]
        if self.tick:
            argv += ["--tick", str(self.tick[0]), "--timeout", str(self.tick[1])]
        return Member(name, argv, os.path.join(self.tmp, name + ".err"))


class Erlang:
    label = "erlang"

    def __init__(self, bindir):
        self.erl = shutil.which("erl")
        if not self.erl or not shutil.which("erlc") or not shutil.which("epmd"):
            sys.exit("cluster-scale: erl, erlc or epmd missing (--systems erlangen skips Erlang)")
        self.beams = tempfile.mkdtemp(prefix="cluster-scale-beam-")
        atexit.register(shutil.rmtree, self.beams, True)
        subprocess.run(["erlc", "-o", self.beams,
                        os.path.join(ROOT, "bench", "erlang", "cluster_member.erl")], check=True)

    def setup(self, tmp):
        self.tmp = tmp
        self.cookie = "c" + secrets.token_hex(16)
        self.port = free_port()
        spawn(["epmd", "-port", str(self.port)],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("epmd did not start")
                time.sleep(0.05)
        self.env = dict(os.environ, ERL_EPMD_PORT=str(self.port))

    def member(self, name, seed):
        argv = [self.erl, "-sname", name, "-setcookie", self.cookie, "-noshell",
                "-kernel", "start_pg", "true", "-pa", self.beams,
                "-eval", f'cluster_member:start("{seed}")']
        return Member(name, argv, os.path.join(self.tmp, name + ".err"), env=self.env)


def node_is(ev_args, name):
    return bool(ev_args) and name in re.split(r"[/@]", ev_args[0])


def run_once(system, n, idle_s, timeout):
    """One run: a dict of measurements (missing ones absent) and notes."""
    r, notes = {}, []
    tmp = tempfile.mkdtemp(prefix=f"cluster-scale-{system.label}-")
    members = []
    try:
        system.setup(tmp)
        seed = system.member("n0", "n0")
        members.append(seed)
        if wait_all([seed], lambda m: m.first("up") or m.first("exit"), timeout) is None \
                or seed.first("up") is None:
            raise RuntimeError(f"n0 did not start: {seed.errors()} {seed.tail()}")
        for i in range(1, n):
            members.append(system.member(f"n{i}", "n0"))
        ups = wait_all(members, lambda m: m.first("up"), timeout)
        if ups is None:
            bad = [m.name for m in members if m.first("up") is None]
            raise RuntimeError(f"not up: {bad[:5]}... {members[-1].tail()}")
        last_up = max(ups)
        full = [str(n - 1)]
        meshed = wait_all(members, lambda m: m.first("members", full), timeout)
        if meshed is None:
            counts = sorted({max([int(a[0]) for k, a, _ in m.events if k == "members"] or [0])
                             for m in members})
            raise RuntimeError(f"no full mesh within {timeout}s; max counts seen {counts}")
        r["mesh ms"] = (max(meshed) - last_up) / 1e6
        # Every member really is in the full mesh now (no flapping)?
        with LOCK:
            lost = [m.name for m in members
                    if [a for k, a, _ in m.events if k == "members"][-1] != full]
        if lost:
            notes.append(f"after the mesh formed, {len(lost)} member(s) lost members again")
        time.sleep(2)
        stats = [proc_status(m.ospid) for m in members]
        r["RSS MiB/node"] = statistics.mean(s[0] for s in stats)
        r["threads/node"] = statistics.mean(s[1] for s in stats)
        r["RSS MiB total"] = sum(s[0] for s in stats)
        t0, c0 = time.monotonic(), sum(cpu_ticks(m.ospid) for m in members)
        s0 = sum(run_ns(m.ospid) for m in members)
        time.sleep(idle_s)
        t1, c1 = time.monotonic(), sum(cpu_ticks(m.ospid) for m in members)
        s1 = sum(run_ns(m.ospid) for m in members)
        r["idle CPU %"] = 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0)
        r["idle CPU % (ns)"] = 100.0 * (s1 - s0) / 1e9 / (t1 - t0)

        # Global name: n1 registers, every other member watches.
        boss, watchers = members[1], [m for i, m in enumerate(members) if i != 1]
        for kind, cmd, done, seen, what in (
                ("global", "register boss", "registered", "seen-global", "boss"),
                ("group", "join workers", "joined", "seen-group", "workers")):
            for m in watchers:
                m.send(f"watch-{kind} {what}")
            # Every watcher's poller has started before the command goes.
            if wait_all(watchers, lambda m: m.first(f"watching-{kind}", [what]), 30) is None:
                notes.append(f"{kind}: not every watcher started polling within 30 s")
                continue
            sent = time.time_ns()
            boss.send(cmd)
            got = wait_all([boss], lambda m: m.first(done, [what]), 30)
            seen_at = wait_all(watchers, lambda m: m.first(seen, [what]), 30)
            if got is None or seen_at is None:
                notes.append(f"{kind}: not seen everywhere within 30 s {boss.errors()}")
                continue
            r[f"{kind} ms (reg)"] = (max(seen_at) - got[0]) / 1e6
            r[f"{kind} ms (send)"] = (max(seen_at) - sent) / 1e6

        # kill -9 of the last member.
        victim, rest = members[-1], members[:-1]
        killed = time.time_ns()
        os.kill(victim.ospid, signal.SIGKILL)
        downs = wait_all(rest, lambda m: next(
            (ns for k, a, ns in m.events if k == "down" and node_is(a, victim.name)), None), 60)
        if downs is None:
            notes.append("down: not every member saw the killed one go within 60 s")
        else:
            r["down ms"] = (max(downs) - killed) / 1e6
    except RuntimeError as e:
        notes.append(f"failed: {e}")
    finally:
        for m in members:
            m.stop()
        deadline = time.monotonic() + 3
        for m in members:
            try:
                m.p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        cleanup()
        for m in members:
            m.err.close()
        if os.environ.get("CLUSTER_KEEP"):
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return r, notes


METRICS = ["mesh ms", "RSS MiB/node", "RSS MiB total", "threads/node", "idle CPU %",
           "idle CPU % (ns)",
           "global ms (reg)", "global ms (send)", "group ms (reg)", "group ms (send)",
           "down ms"]


def fmt(x):
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.1 or x == 0:
        return f"{x:.2f}"
    return f"{x:.3f}"


def summary(vals):
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.median(vals))} [{fmt(min(vals))}-{fmt(max(vals))}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default=os.environ.get("N", "10 25 50"),
                    help='cluster sizes, e.g. "10 25 50"')
    ap.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", "3")))
    ap.add_argument("--idle-s", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=180.0,
                    help="seconds to wait for members to start and for the mesh")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--systems", default="erlangen,erlang")
    ap.add_argument("--erlangen-tick", default=os.environ.get("ERLANGEN_TICK", ""),
                    help='Erlangen members\' heartbeat tick and failure timeout in s, '
                         'e.g. "15 60" (Erlang\'s net_ticktime 60); default the node defaults')
    args = ap.parse_args()
    sizes = [int(x) for x in args.n.replace(",", " ").split()]
    if any(s < 3 for s in sizes):
        sys.exit("cluster-scale: N must be at least 3 (n1 registers, the last one is killed)")

    atexit.register(cleanup)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    systems = []
    for name in args.systems.split(","):
        systems.append({"erlangen": Erlangen, "erlang": Erlang}[name.strip()](args.bin_dir))
        if args.erlangen_tick and name.strip() == "erlangen":
            tick, timeout = args.erlangen_tick.replace(",", " ").split()
            systems[-1].tick = (tick, timeout)
            systems[-1].label = f"erlangen-tick{tick}"

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    otp = ""
    if any(s.label == "erlang" for s in systems):
        otp = subprocess.run(["erl", "-noshell", "-eval",
                              'io:format("~s", [erlang:system_info(otp_release)]), halt().'],
                             capture_output=True, text=True).stdout.strip()
    log(f"# cluster-scale {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, "
        f"{os.cpu_count()} cores, {cpu}; N = {sizes}, {args.runs} run(s), "
        f"idle {args.idle_s:g} s" + (f", Erlang/OTP {otp}" if otp else ""))

    results = {}  # (n, label) -> metric -> [values]
    for n in sizes:
        for run in range(1, args.runs + 1):
            for system in systems:
                started = time.monotonic()
                r, notes = run_once(system, n, args.idle_s, args.timeout)
                for k, v in r.items():
                    results.setdefault((n, system.label), {}).setdefault(k, []).append(v)
                line = "  ".join(f"{k}={fmt(v)}" for k, v in r.items())
                log(f"run N={n} #{run} {system.label} ({time.monotonic() - started:.0f} s): {line}")
                for note in notes:
                    log(f"  note: {note}")
        labels = [s.label for s in systems]
        log(f"\n## N = {n}: median [min-max] of {args.runs} run(s)")
        log(f"{'':18}" + "".join(f"{l:>26}" for l in labels))
        for k in METRICS:
            log(f"{k:18}" + "".join(
                f"{summary(results.get((n, l), {}).get(k, [])):>26}" for l in labels))
        log("")


if __name__ == "__main__":
    main()
