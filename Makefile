# A thin front over cargo: programs are built in release mode and copied
# into bin/. `make test` is what CI runs.

CARGO ?= cargo
PROGRAMS := erlangen-kernel erlangen-port-mapper
BENCHMARKS := erlangen-ring-benchmark erlangen-message-benchmark \
	erlangen-spawn-benchmark erlangen-fanin-benchmark \
	erlangen-codec-benchmark erlangen-remote-benchmark

.PHONY: all programs benchmarks test check bench bench-erlang bench-floor doc clean FORCE

all: programs benchmarks

programs: $(addprefix bin/,$(PROGRAMS))
benchmarks: $(addprefix bin/,$(BENCHMARKS))

# Always ask cargo: it knows whether anything changed.
bin/%: FORCE
	$(CARGO) build --release --bin $*
	@mkdir -p bin
	cp target/release/$* $@

FORCE:

# Format, lints, docs, then every test (unit, integration, doc).
test: check
	$(CARGO) test --all-targets
	$(CARGO) test --doc

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

doc:
	$(CARGO) doc --no-deps

# One sitting: our figures, the bare-thread floor and Erlang/OTP (if erl is
# installed), in that order. `bash bench/run-all.sh 3` repeats it 3 times.
bench: benchmarks bench-floor
	bash bench/run-all.sh 1

bench-floor:
	@mkdir -p target
	rustc -O --edition 2021 bench/floor.rs -o target/bench-floor

bench-erlang:
	bash bench/erlang/run.sh 3

clean:
	$(CARGO) clean
	rm -rf bin
