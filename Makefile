# Switchboard — `make run` and `make test` do everything on a fresh Debian machine with Swift.
SHELL        := /bin/bash
SWIFT        ?= swift
DATA_DIR     ?= ./switchboard-data
HTTP_LISTEN  ?= 127.0.0.1:8080
PYTHON       := .venv/bin/python

FUZZ_SECONDS ?= 300

.PHONY: run test build release deps test-deps unit e2e fuzz clean-data test-sanitized

## Install what is missing, build release, and serve on embedded SQLite.
run: deps release
	.build/release/switchboard serve --data-dir "$(DATA_DIR)" --http-listen "$(HTTP_LISTEN)"

## Install what is missing, build, and run every test (Swift unit tests, end-to-end, a short fuzz run).
test: test-deps
	$(SWIFT) build --build-tests
	$(MAKE) unit e2e
	$(MAKE) fuzz FUZZ_SECONDS=20

## libFuzzer on the STUN/ChannelData codecs with a re-encode property (FUZZ_SECONDS, default 300).
fuzz:
	cd Fuzz && $(SWIFT) build --scratch-path ../.build-fuzz --product WireFuzz -Xswiftc -sanitize=fuzzer,address
	mkdir -p .build-fuzz/corpus && cp Fuzz/corpus/* .build-fuzz/corpus/
	.build-fuzz/debug/WireFuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		-artifact_prefix=.build-fuzz/ .build-fuzz/corpus Fuzz/corpus

## The failures are printed again at the end, where a CI log's tail shows them.
unit:
	@mkdir -p .build; set -o pipefail; $(SWIFT) test --skip-build 2>&1 | tee .build/unit.log || { \
		echo "---- failures (from .build/unit.log) ----"; \
		grep -E "✘|error:|XCTAssert|failed" .build/unit.log | tail -40; exit 1; }

e2e:
	SWITCHBOARD_BIN="$(CURDIR)/.build/debug/switchboard" $(PYTHON) -m pytest -q Tests/e2e

## The Swift unit tests under ThreadSanitizer, then AddressSanitizer (each its own build
## folder; not part of `make test`: two more cold builds do not fit CI's time).
test-sanitized: test-deps
	$(SWIFT) build --build-tests --scratch-path .build-tsan -Xswiftc -sanitize=thread
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
		$(SWIFT) test --skip-build --scratch-path .build-tsan -Xswiftc -sanitize=thread
	$(SWIFT) build --build-tests --scratch-path .build-asan -Xswiftc -sanitize=address
	ASAN_OPTIONS="detect_leaks=0" $(SWIFT) test --skip-build --scratch-path .build-asan -Xswiftc -sanitize=address

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release --product switchboard

deps:
	scripts/install-deps.sh

test-deps:
	scripts/install-deps.sh --test

clean-data:
	rm -rf "$(DATA_DIR)"
