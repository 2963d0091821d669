# Foyer — the two commands the README promises, and the benchmarks.
SHELL := /bin/bash
SWIFT_TEST_FLAGS ?= --disable-xctest

.PHONY: test demo build release deps format fuzz bench-redis bench-tokens bench-room bench-shards bench-proxy bench-status bench-boxoffice onsale clean

## make test: install what is missing, start throwaway Redis + PostgreSQL, build, run every test.
test:
	@scripts/install-deps.sh chromium fonts-dejavu-core prometheus zbar-tools librsvg2-bin   # chromium: the journey test; prometheus: promtool; zbarimg and rsvg-convert: the QR round trip
	@scripts/install-schemathesis.sh   # PyPI, pinned, in .build/schemathesis: APIContractTests
	swift build --build-tests
	scripts/services.sh scripts/run-tests.sh $(SWIFT_TEST_FLAGS)

## make demo: Redis, PostgreSQL, BoxOffice with the demo on-sale and the gateway in front of it.
demo: deps
	swift build
	scripts/demo.sh

deps:
	@scripts/install-deps.sh

build:
	swift build

release:
	swift build -c release

format:
	swift format --in-place --recursive Sources Tests loadtest Package.swift

bench-redis:
	loadtest/bench-redis

bench-tokens:
	loadtest/bench-tokens

bench-room:
	loadtest/bench-room

bench-shards:
	loadtest/bench-shards

bench-proxy:
	loadtest/bench-proxy

bench-status:
	loadtest/bench-status

bench-boxoffice:
	loadtest/bench-boxoffice

## make onsale: the 50,000-visitor on-sale through gateway and BoxOffice (release builds).
onsale:
	loadtest/onsale loadtest/onsale-large.yaml

## make fuzz: ten minutes of libFuzzer on each edge reader (head, chunk, path); the corpus grows in fuzz/corpus.
fuzz:
	for target in head chunk path; do scripts/fuzz.sh $$target 600; done

clean:
	rm -rf .build .run
