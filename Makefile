# A thin wrapper over meson and ninja. `make run` and `make test` are the README's two
# commands: each installs missing Debian packages first (scripts/install-deps).
BUILD ?= build
MESON_OPTS ?=
ifeq ($(WERROR),1)
MESON_OPTS += -Dwerror=true
endif
CONFIG ?= experiments/default.yaml

.PHONY: all deps build run test bench plots baseline gate format format-check clean sanitize fuzz \
  tsan

all: build

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)
	ln -sf $(BUILD)/src/harness harness

run: deps build
	@mkdir -p results
	./harness --config $(CONFIG)

test: deps build
	meson test -C $(BUILD) --print-errorlogs

# The whole suite with ASan and UBSan (UB aborts: halt_on_error), in its own build.
sanitize: deps
	test -f build-asan/build.ninja || \
	  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false $(MESON_OPTS)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test -C build-asan --print-errorlogs

# The multi-threaded test (tests/test_mt.c: every thread-safe module, 50 runs each, cross-thread
# frees) and the binary-trace test (the version-2 reader's read-ahead thread) under
# ThreadSanitizer, in its own clang build: any data race fails it. The reference
# modules are left out (sanitizers refuse RTLD_DEEPBIND); TSan slows the test about 3 times.
tsan: deps
	test -f build-tsan/build.ninja || \
	  CC=clang meson setup build-tsan -Db_sanitize=thread -Db_lundef=false $(MESON_OPTS)
	ninja -C build-tsan tests/test_mt tests/test_bin
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  meson test -C build-tsan --no-rebuild --print-errorlogs --timeout-multiplier 4 mt bin

# Each libFuzzer target for FUZZ_SECONDS (default 60) in build-fuzz (clang).
fuzz: deps
	scripts/fuzz

bench: deps build
	scripts/bench-overhead
	scripts/bench-load

# Figures of the newest results/*.csv, or of CSV=FILE, under results/plots/ (scripts/plots).
plots: deps
	scripts/plots $(CSV)

# The regression gate (scripts/gate): `make baseline` rewrites results/baseline.csv and
# results/baseline-instructions.csv on purpose; `make gate` runs again and compares
# (GATE_FLAGS=--no-timing on a busy machine).
baseline: deps build
	scripts/gate --baseline

gate: deps build
	scripts/gate $(GATE_FLAGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) harness
