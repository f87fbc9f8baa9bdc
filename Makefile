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

test-asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DSHBUF_SANITIZE=address -DSHBUF_BENCH=OFF"

test-tsan:
	$(MAKE) test BUILD=build-tsan CMAKE_FLAGS="-DSHBUF_SANITIZE=thread -DSHBUF_BENCH=OFF"

# The whole suite built with clang (warnings are errors there too).
test-clang:
	$(MAKE) test BUILD=build-clang \
	  CMAKE_FLAGS="-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSHBUF_BENCH=OFF"

# Runs each libFuzzer target for FUZZ_SECONDS from the seed corpus in fuzz/corpus.
FUZZ_SECONDS ?= 60
fuzz: deps
	@CXX=clang++ cmake -S . -B build-fuzz -DSHBUF_WERROR=ON -DSHBUF_FUZZ=ON -DSHBUF_SANITIZE=address \
	  -DSHBUF_TESTS=OFF -DSHBUF_BENCH=OFF -DSHBUF_WITH_XEN=OFF >/dev/null
	@cmake --build build-fuzz -j$(JOBS)
	scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-tsan build-clang build-fuzz build-deb

# Boots a real Xen under QEMU and runs the xen provider tests and the demo in dom0.
test-xen: deps
	tests/xen/run.sh

# Runs `shbuf bench` (tables on stdout, JSON in $(BUILD)/bench.json) and draws
# docs/bench.svg from the JSON; fails when a performance target is missed.
bench: build
	@mkdir -p docs
	./$(BUILD)/shbuf bench --json-file $(BUILD)/bench.json; status=$$?; \
	  python3 bench/chart.py $(BUILD)/bench.json docs/bench.svg && exit $$status

# Debian packages libshbuf0, libshbuf-dev and shbuf in build-deb/, built with
# dpkg-buildpackage from a copy of the tree and checked with lintian.
deb:
	scripts/deb.sh build-deb
