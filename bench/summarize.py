#!/usr/bin/env python3
"""Medians with min-max of a `bench/run-all.sh N` sitting.

Reads the sitting's output (stdin or a file) and prints one table row per
workload: for each system (erlangen, floor, erlang) the median of the runs
with the range in brackets, in the unit the README uses.

    bash bench/run-all.sh 3 | tee bench/results.txt
    python3 bench/summarize.py bench/results.txt
"""

import re
import statistics
import sys
from collections import defaultdict

# (pattern on the workload line, unit, how to pick the figure)
FIGURES = [
    (r"(W1 ring n=\d+):.* ([\d.]+) us/hop", "us/hop"),
    (r"(W2 ping-pong pairs=\d+):.* (\d+) msgs/s", "msgs/s"),
    (r"(W3 spawn):.* ([\d.]+) us/spawn", "us/spawn"),
    (r"(W3 alive):.* resident (\d+) bytes/agent", "bytes/agent"),
    (r"(W4 fan-in senders=\d+):.* (\d+) msgs/s", "msgs/s"),
    (r"(W5 round trip):.* ([\d.]+) us each", "us"),
    (r"(W5 stream):.* (\d+) msgs/s", "msgs/s"),
]


def human(value, unit):
    if unit == "msgs/s":
        return f"{value / 1e6:.2f} M"
    if unit == "bytes/agent":
        return f"{value:,.0f}"
    return f"{value:.2f}"


def main():
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    runs = defaultdict(list)
    order = []
    for line in text.splitlines():
        parts = line.split(None, 1)
        if len(parts) != 2:
            continue
        system, rest = parts
        # Async and mixed lines are marked by the benchmark programs.
        for tag in ("async ", "mixed "):
            if rest.startswith(tag):
                system, rest = system + " " + tag.strip(), rest[len(tag):]
        for pattern, unit in FIGURES:
            m = re.search(pattern, rest)
            if m:
                key = (m.group(1), unit)
                if key not in order:
                    order.append(key)
                runs[(key, system)].append(float(m.group(2)))
    rank = ["erlangen", "erlangen async", "erlangen mixed", "floor", "floor async", "erlang"]
    systems = sorted(
        {s for (_, s) in runs},
        key=lambda s: rank.index(s) if s in rank else len(rank),
    )
    print("| workload | " + " | ".join(systems) + " |")
    print("|---" * (len(systems) + 1) + "|")
    for key in order:
        cells = []
        for system in systems:
            values = runs.get((key, system))
            if not values:
                cells.append("–")
                continue
            med = statistics.median(values)
            if len(values) > 1:
                cells.append(f"{human(med, key[1])} ({human(min(values), key[1])}–{human(max(values), key[1])}, n={len(values)})")
            else:
                cells.append(human(med, key[1]))
        print(f"| {key[0]}, {key[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
