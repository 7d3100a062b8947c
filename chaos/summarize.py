#!/usr/bin/env python3
"""Merges the reports of several chaos runs (report.txt or the captured
output of chaos/netns.sh) into one: each line that appears in every run
with the same words is printed once, with every number replaced by
"median [min-max]" over the runs (a single value when they all agree).
Lines only some runs have follow, each with the run it came from.

Then every failure of every run, in full: each "chaos: FAIL" line and the
detail lines under it, a run that was skipped ("chaos: skipped") and a run
that never reached its verdict (no "chaos: PASS", "chaos: FAIL"). Exit
status 1 if any run failed in any of these ways (the merged figures of
such runs are not figures to publish), 0 otherwise.

usage: chaos/summarize.py RUN1.txt RUN2.txt RUN3.txt
"""
import re
import statistics
import sys

NUMBER = re.compile(r"\d+")


def key(line):
    """The line's words with numbers blanked: what must match across runs."""
    return NUMBER.sub("#", line.split(":", 1)[0]) + ":" + NUMBER.sub("#", line)


def failures(lines):
    """Every failure the run reports, each with its detail lines."""
    found = []
    verdict = False
    in_failure = False
    for line in lines:
        if line.startswith("chaos: FAIL"):
            found.append(line)
            in_failure = True
            verdict = True
        elif line.startswith("chaos: skipped"):
            found.append(line)
            in_failure = False
            verdict = True
        elif in_failure and line.startswith("  "):
            found.append(line)
        else:
            in_failure = False
            if line.startswith("chaos: PASS"):
                verdict = True
    if not verdict:
        found.append("no verdict: the run ended before 'chaos: PASS' or 'chaos: FAIL'")
    return found


def merged(values, line):
    """`line` with each number replaced by its median [min-max] over `values`."""
    parts = NUMBER.split(line)
    out = [parts[0]]
    for i, part in enumerate(parts[1:]):
        column = [v[i] for v in values]
        lo, hi, mid = min(column), max(column), statistics.median(column)
        mid = int(mid) if mid == int(mid) else mid
        out.append(str(mid) if lo == hi else f"{mid} [{lo}-{hi}]")
        out.append(part)
    return "".join(out)


def main(paths):
    runs = []
    failed = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            every = [l.rstrip("\n") for l in f]
        failed.append((path, failures(every)))
        lines = [l for l in every if not l.startswith(("sample ", "chaos: logs", "  "))]
        runs.append({key(l): l for l in lines})
    common = [k for k in runs[0] if all(k in r for r in runs)]
    for k in common:
        values = [[int(n) for n in NUMBER.findall(r[k])] for r in runs]
        print(merged(values, runs[0][k]))
    partial = [(path, line) for path, r in zip(paths, runs) for k, line in r.items()
               if k not in common and not line.startswith(("chaos: FAIL", "chaos: skipped"))]
    if partial:
        print("only in some runs:")
        for path, line in partial:
            print(f"  [{path}] {line}")
    bad = [(path, found) for path, found in failed if found]
    if bad:
        print(f"failures: {len(bad)} of {len(paths)} runs")
        for path, found in bad:
            print(f"  {path}:")
            for line in found:
                print(f"    {line}")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
