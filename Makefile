# A thin wrapper over meson and ninja. `make run` and `make test` are the README's two
# commands: each installs missing Debian packages first (scripts/install-deps).
BUILD ?= build
MESON_OPTS ?=
ifeq ($(WERROR),1)
MESON_OPTS += -Dwerror=true
endif
TRACES ?= $(wildcard traces/*.trace traces/*.rep)

.PHONY: all deps build run test bench plots baseline gate format format-check clean

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
	./harness --alloc=all --csv results/latest.csv $(TRACES)

test: deps build
	meson test -C $(BUILD) --print-errorlogs

bench: deps build
	scripts/bench-overhead

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) harness
