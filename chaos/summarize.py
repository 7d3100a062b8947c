#!/usr/bin/env python3
"""Merges the reports of several chaos runs (report.txt or the captured
output of chaos/netns.sh) into one: each line that appears in every run
with the same words is printed once, with every number replaced by
"median [min-max]" over the runs (a single value when they all agree).

usage: chaos/summarize.py RUN1.txt RUN2.txt RUN3.txt
"""
import re
import statistics
import sys

NUMBER = re.compile(r"\d+")


def key(line):
    """The line's words with numbers blanked: what must match across runs."""
    return NUMBER.sub("#", line.split(":", 1)[0]) + ":" + NUMBER.sub("#", line)


def main(paths):
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines = [l.rstrip("\n") for l in f if not l.startswith(("sample ", "chaos: logs", "  "))]
        runs.append({key(l): l for l in lines})
    first = runs[0]
    for k, line in first.items():
        if not all(k in r for r in runs):
            continue
        values = [[int(n) for n in NUMBER.findall(r[k])] for r in runs]
        parts = NUMBER.split(line)
        out = [parts[0]]
        for i, part in enumerate(parts[1:]):
            column = [v[i] for v in values]
            lo, hi, mid = min(column), max(column), statistics.median(column)
            mid = int(mid) if mid == int(mid) else mid
            out.append(str(mid) if lo == hi else f"{mid} [{lo}-{hi}]")
            out.append(part)
        print("".join(out))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
