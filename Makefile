# rum's build, tests, demo and benchmarks. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := build
IMAGE_CACHE ?= /var/cache/rum-test
UNIT_TESTS = $(shell find dist/test/unit -name '*.test.js' 2>/dev/null | sort)
E2E_TESTS = $(shell find dist/test/e2e -name '*.test.js' 2>/dev/null | sort)

.PHONY: deps build pack e2e-install unit image env-start env-stop e2e test test-run demo demo-run bench bench-run clean

# One sandbox per machine: a second `make test`, `bench` or `demo` started meanwhile would rebuild
# dist/ under the first and stop its VMs, so it waits for nothing and says why instead.
SANDBOX_LOCK ?= /run/lock/rum-sandbox.lock
locked = mkdir -p $(dir $(SANDBOX_LOCK)); flock -n -E 75 $(SANDBOX_LOCK) $(MAKE) --no-print-directory $(1) || { \
  s=$$?; [ $$s != 75 ] || echo "make: another make test, bench or demo is using this machine's sandbox (lock $(SANDBOX_LOCK)); run this when it has ended" >&2; exit $$s; }

deps:
	@scripts/install-deps.sh

build:
	@npm run --silent build

# The npm package, as users install it (its prepack script builds it first): dist/rum-VERSION.tgz.
pack: deps
	@rm -f dist/rum-*.tgz && mkdir -p dist && npm pack --silent --pack-destination dist >/dev/null

# The e2e tier drives rum as installed from that tarball, not the checkout (test/e2e/env.ts):
# a fresh prefix each run, readable by the unprivileged test user.
E2E_PREFIX ?= /run/rum-test/prefix
e2e-install: pack
	@rm -rf $(E2E_PREFIX) && mkdir -p -m 0755 $(E2E_PREFIX)
	@npm install --global --prefix $(E2E_PREFIX) --no-audit --no-fund --silent ./dist/rum-*.tgz

unit: build
	node --test --test-reporter=spec $(UNIT_TESTS)

# The guest image for end-to-end tests, built from Debian packages, cached by its script's hash.
image:
	@fixtures/guest-image/build.sh $(IMAGE_CACHE)

env-start:
	@test/e2e/env.sh start

env-stop:
	@test/e2e/env.sh stop

# The whole suite in one runner, so it ends with one summary line. One test file at a time:
# e2e files boot VMs on a 2-core machine. The environment is stopped even when tests fail; its
# output goes to a log (shown only if stopping fails), so the runner's summary stays last.
# RUM_E2E_REQUIRE=1: a broken environment fails the suite instead of skipping the VM tests.
STOP_LOG ?= /tmp/rum-test-env-stop.log
test:
	@$(call locked,test-run)
test-run: deps build image e2e-install
	@test/e2e/env.sh start
	@status=0; tally=$$(mktemp); \
	  RUM_TALLY=$$tally RUM_E2E_REQUIRE=1 node --test --test-concurrency=1 --test-reporter=spec $(UNIT_TESTS) $(E2E_TESTS) || status=$$?; \
	  test/e2e/env.sh stop > $(STOP_LOG) 2>&1 || { cat $(STOP_LOG); status=1; }; \
	  node scripts/tally.mjs $$tally; rm -f $$tally; echo "make test: the suite ran $$((SECONDS / 60)) min $$((SECONDS % 60)) s"; exit $$status

demo:
	@$(call locked,demo-run)
demo-run: deps build image
	@examples/demo/run.sh

bench:
	@$(call locked,bench-run)
bench-run: deps build
	@node dist/bench/run.js

clean:
	rm -rf dist
