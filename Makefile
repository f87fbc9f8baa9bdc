# Drives CMake. `make demo` and `make test` are the Quick start.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
SHELL := /bin/bash

.PHONY: all deps configure build demo test test-asan test-tsan test-clang fuzz bench test-xen clean deb

all: build

deps:
	@scripts/deps.sh

# Warnings are errors in the developer and CI builds made through this file.
configure: deps
	@cmake -S . -B $(BUILD) -DSHBUF_WERROR=ON $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

demo: build
	./$(BUILD)/shbuf demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# The suite built with clang under ASan and UBSan, with the libFuzzer targets
# in the same build, so that `make fuzz` after it builds nothing more.
ASAN_BUILD ?= build-asan
ASAN_FLAGS = -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DSHBUF_SANITIZE=address -DSHBUF_FUZZ=ON -DSHBUF_BENCH=OFF
test-asan:
	$(MAKE) test BUILD=$(ASAN_BUILD) CMAKE_FLAGS="$(ASAN_FLAGS)"

test-tsan:
	$(MAKE) test BUILD=build-tsan CMAKE_FLAGS="-DSHBUF_SANITIZE=thread -DSHBUF_BENCH=OFF"

# The whole suite built with clang (warnings are errors there too).
test-clang:
	$(MAKE) test BUILD=build-clang \
	  CMAKE_FLAGS="-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSHBUF_BENCH=OFF"

# Runs each libFuzzer target for FUZZ_SECONDS from the seed corpus in fuzz/corpus.
FUZZ_SECONDS ?= 60
fuzz:
	$(MAKE) build BUILD=$(ASAN_BUILD) CMAKE_FLAGS="$(ASAN_FLAGS)"
	scripts/fuzz.sh $(ASAN_BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-tsan build-clang build-deb

# Boots a real Xen under QEMU and runs the xen provider tests and the demo in dom0.
test-xen: deps
	tests/xen/run.sh

# Runs `shbuf bench` (tables on stdout, JSON in $(BUILD)/bench.json), draws
# docs/bench.svg and writes the README's table ($(BUILD)/bench.md) from the
# JSON; fails when a performance target is missed.
bench: build
	@mkdir -p docs
	./$(BUILD)/shbuf bench --json-file $(BUILD)/bench.json; status=$$?; \
	  python3 bench/chart.py $(BUILD)/bench.json docs/bench.svg && \
	  python3 bench/table.py $(BUILD)/bench.json | tee $(BUILD)/bench.md && exit $$status

# Debian packages libshbuf0, libshbuf-dev and shbuf in build-deb/, built with
# dpkg-buildpackage from a copy of the tree and checked with lintian.
deb:
	scripts/deb.sh build-deb
