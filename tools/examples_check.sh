#!/usr/bin/env bash
# Runs every program under examples/ (built by `cargo test --all-targets`
# into BIN_DIR) and compares what it prints with the output README.md
# quotes for it: the code block after the line
# `<!-- output of examples/NAME.rs -->`. An example without quoted output,
# one that fails or takes longer than 60 s, or output that differs fails
# the check (exit 1).
#
# What differs from run to run is blanked on both sides before comparing:
# agent numbers (`#<AGENT 12>`) everywhere, and per example the fields
# listed in normalize() below.
#
# usage: tools/examples_check.sh [BIN_DIR]   (default target/debug/examples)
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-target/debug/examples}

# The quoted output of examples/$1.rs: the first code block after its marker.
quoted() {
  awk -v marker="<!-- output of examples/$1.rs -->" '
    $0 == marker { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    found && inside { print }
  ' README.md
}

normalize() { # $1: example name; stdin: its output
  local rules=(-e 's/#<AGENT [0-9]+>/#<AGENT n>/g')
  case "$1" in
    # The size of Cargo.toml, read by a blocking job.
    async_pool) rules+=(-e 's/^(\(#<AGENT n> :OK \([0-9]+ [0-9]+ )[0-9]+\)\)$/\1size))/'
                        -e 's/Cargo\.toml is [0-9]+ bytes/Cargo.toml is size bytes/') ;;
  esac
  sed -E "${rules[@]}"
}

status=0
for src in examples/*.rs; do
  name=$(basename "$src" .rs)
  want=$(quoted "$name")
  if [ -z "$want" ]; then
    echo "examples: README.md quotes no output for $src (a code block after <!-- output of $src -->)"
    status=1
    continue
  fi
  if [ ! -x "$BIN/$name" ]; then
    echo "examples: $BIN/$name is missing (cargo test --all-targets or cargo build --examples builds it)"
    status=1
    continue
  fi
  got=$(timeout 60 "$BIN/$name" 2>/dev/null)
  code=$?
  if [ "$code" != 0 ]; then
    echo "examples: $name exited with status $code; it printed:"
    printf '%s\n' "$got"
    status=1
    continue
  fi
  if ! diff -u --label "README.md ($name)" --label "examples/$name.rs (this run)" \
      <(printf '%s\n' "$want" | normalize "$name") <(printf '%s\n' "$got" | normalize "$name"); then
    echo "examples: $name does not print what README.md quotes"
    status=1
    continue
  fi
  echo "examples: $name prints what README.md quotes"
done
exit $status
