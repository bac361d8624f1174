# Switchboard — `make run` and `make test` do everything on a fresh Debian machine with Swift.
SHELL        := /bin/bash
SWIFT        ?= swift
DATA_DIR     ?= ./switchboard-data
HTTP_LISTEN  ?= 127.0.0.1:8080
PYTHON       := .venv/bin/python

FUZZ_SECONDS ?= 300
## address (default) or none: libFuzzer's coverage alone runs many times faster; alternate them.
FUZZ_SANITIZER ?= address
FUZZ_TARGETS ?= WireFuzz MediaFuzz RTCPFuzz TURNFuzz WHEPFuzz HTTPFuzz PeerFuzz
## One build directory for both: only our own modules are instrumented, so switching rebuilds just them.
FUZZ_BUILD   := .build-fuzz
FUZZ_BIN     := $(FUZZ_BUILD)/release

.PHONY: run test build release deps test-deps unit e2e fuzz fuzz-all fuzz-merge clean-data test-sanitized

## Install what is missing, build release, and serve on embedded SQLite.
run: deps release
	.build/release/switchboard serve --data-dir "$(DATA_DIR)" --http-listen "$(HTTP_LISTEN)"

## Install what is missing, build, and run every test (Swift unit tests, end-to-end, a short fuzz run).
test: test-deps
	$(SWIFT) build --build-tests
	$(MAKE) unit e2e
	$(MAKE) fuzz FUZZ_SECONDS=20

## libFuzzer on the Wire codecs with a re-encode property (FUZZ_SECONDS, default 300); `make test` runs it briefly.
fuzz:
	$(MAKE) fuzz-all FUZZ_TARGETS=WireFuzz

## Every fuzz target (Fuzz/Sources) for FUZZ_SECONDS each, from its committed corpus (Fuzz/corpus/<target>);
## the stateful ones (programs of steps) take inputs up to 1 KiB from the start;
## new inputs collect in $(FUZZ_BUILD)/corpus, crashes in $(FUZZ_BUILD)/artifacts. Prints executions per
## target, this run's and all runs' (from .build-fuzz-executions.log). Exit 1 on a finding.
fuzz-all:
	for target in $(FUZZ_TARGETS); do \
		SWITCHBOARD_FUZZ=$(FUZZ_SANITIZER) $(SWIFT) build -c release --scratch-path $(FUZZ_BUILD) --product $$target || exit 1; \
	done
	@mkdir -p $(FUZZ_BUILD)/artifacts $(FUZZ_BUILD)/logs; failed=""; \
	for target in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$target Fuzz/corpus/$$target; \
		echo "---- $$target ($(FUZZ_SANITIZER), $(FUZZ_SECONDS) s)"; \
		case $$target in MediaFuzz|RTCPFuzz|TURNFuzz) programs="-max_len=1024 -len_control=0";; *) programs="";; esac; \
		SWIFT_BACKTRACE=enable=no $(FUZZ_BIN)/$$target -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=60 $$programs \
			-artifact_prefix=$(FUZZ_BUILD)/artifacts/$$target- $(FUZZ_BUILD)/corpus/$$target Fuzz/corpus/$$target \
			> $(FUZZ_BUILD)/logs/$$target.log 2>&1 || failed="$$failed $$target"; \
		grep -E '^Done|SUMMARY|Fatal error|stat::average_exec' $(FUZZ_BUILD)/logs/$$target.log || true; \
		runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_BUILD)/logs/$$target.log); \
		echo "$$target $(FUZZ_SANITIZER) $(FUZZ_SECONDS) $${runs:-0}" >> .build-fuzz-executions.log; \
	done; \
	echo "---- executions (this run / all runs logged in .build-fuzz-executions.log)"; \
	for target in $(FUZZ_TARGETS); do \
		awk -v t=$$target '$$1 == t { total += $$4; last = $$4 } END { printf "%-10s %12d %14d\n", t, last, total }' \
			.build-fuzz-executions.log; \
	done; \
	if [ -n "$$failed" ]; then echo "findings in:$$failed (see $(FUZZ_BUILD)/logs, $(FUZZ_BUILD)/artifacts)"; exit 1; fi

## Minimizes what the runs found (libFuzzer -merge=1) into $(FUZZ_BUILD)/corpus/<target>, which later runs start
## from, and copies its FUZZ_KEEP smallest inputs into the committed corpus (named seeds stay): a few dozen small files.
FUZZ_KEEP ?= 40
fuzz-merge:
	@mkdir -p $(FUZZ_BUILD)/logs; for target in $(FUZZ_TARGETS); do \
		rm -rf $(FUZZ_BUILD)/merged && mkdir -p $(FUZZ_BUILD)/merged $(FUZZ_BUILD)/corpus/$$target && \
		SWIFT_BACKTRACE=enable=no $(FUZZ_BIN)/$$target -merge=1 $(FUZZ_BUILD)/merged Fuzz/corpus/$$target \
			$(FUZZ_BUILD)/corpus/$$target > $(FUZZ_BUILD)/logs/$$target-merge.log 2>&1 || exit 1; \
		rm -rf $(FUZZ_BUILD)/corpus/$$target && mv $(FUZZ_BUILD)/merged $(FUZZ_BUILD)/corpus/$$target; \
		ls -Sr $(FUZZ_BUILD)/corpus/$$target | head -n $(FUZZ_KEEP) | \
			while read name; do cp $(FUZZ_BUILD)/corpus/$$target/$$name Fuzz/corpus/$$target/$$(echo $$name | cut -c1-16); done; \
		echo "$$target: $$(ls $(FUZZ_BUILD)/corpus/$$target | wc -l) inputs kept locally, $$(ls Fuzz/corpus/$$target | wc -l) committed"; \
	done

## The failures are printed again at the end, where a CI log's tail shows them.
unit:
	@mkdir -p .build; set -o pipefail; $(SWIFT) test --skip-build 2>&1 | tee .build/unit.log || { \
		echo "---- failures (from .build/unit.log) ----"; \
		grep -E "✘|error:|XCTAssert|failed" .build/unit.log | tail -40; exit 1; }

e2e:
	SWITCHBOARD_BIN="$(CURDIR)/.build/debug/switchboard" $(PYTHON) -m pytest -q Tests/e2e

## The Swift unit tests under ThreadSanitizer, then AddressSanitizer (each its own build
## folder; not part of `make test`: two more cold builds do not fit CI's time). One test at a
## time: sanitized code is several times slower, and 481 tests at once on two cores left the
## timed ones (EventHub's deadlines) waiting 25 s for a thread; serial, TSan takes about 75 s.
test-sanitized: test-deps
	$(SWIFT) build --build-tests --scratch-path .build-tsan -Xswiftc -sanitize=thread
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
		$(SWIFT) test --skip-build --no-parallel --scratch-path .build-tsan -Xswiftc -sanitize=thread
	$(SWIFT) build --build-tests --scratch-path .build-asan -Xswiftc -sanitize=address
	ASAN_OPTIONS="detect_leaks=0" \
		$(SWIFT) test --skip-build --no-parallel --scratch-path .build-asan -Xswiftc -sanitize=address

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
