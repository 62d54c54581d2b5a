# lane-agent: `make demo` runs it, `make test` checks it. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo needs only the package; the tests also build xkbcommon against a system library,
# so their install runs after scripts/system-deps.sh.
STAMP := $(VENV)/.installed-test
DEMO_STAMP := $(VENV)/.installed-demo
# The display page's MQTT.js, pinned by web/package-lock.json; npm writes this file on install.
WEB_STAMP := web/node_modules/.package-lock.json

.PHONY: all demo test lint typecheck unit venv clean schema docs system-deps bench web deb

all: test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[demo]"
	@touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[test,demo,bench]"
	@touch $@ $(DEMO_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	scripts/system-deps.sh web
	cd web && npm ci --no-audit --no-fund
	@touch $@

web: $(WEB_STAMP)

system-deps:
	scripts/system-deps.sh test

venv: system-deps $(STAMP) $(WEB_STAMP)

demo: $(DEMO_STAMP) $(WEB_STAMP)
	$(BIN)/lane-agent demo

# The host suite (with the display page in headless Chromium, tests/browser), the hardware tier
# (tests/hardware) in one VM boot (scripts/vm-test), then the service tier (tests/service): the
# .deb under systemd as PID 1 in another (scripts/vm-service). The package is built once for the
# host suite's package tests and the service tier, with a second build of the same tree under a
# higher version for the upgrade test.
TEST_DEB := build/test-deb
VERSION = $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
test: system-deps $(STAMP) $(WEB_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	scripts/build-deb --no-lintian --out $(TEST_DEB)/this >/dev/null
	@# The upgrade's package builds while the host suite runs (its pip downloads overlap the tests).
	scripts/build-deb --no-lintian --out $(TEST_DEB)/next --version $(VERSION)+next1 \
		>$(TEST_DEB)/next.log 2>&1 & next=$$!; \
	LANE_AGENT_DEB=$$(realpath $(TEST_DEB)/this/*.deb) $(BIN)/pytest; rc=$$?; \
	wait $$next || { tail -n 30 $(TEST_DEB)/next.log; echo "build of the upgrade's package failed"; exit 1; }; \
	exit $$rc
	@# The service tier's disk image (downloads and dpkg) is made while the hardware VM runs.
	scripts/vm-service --deb $(TEST_DEB)/this/*.deb --next-deb $(TEST_DEB)/next/*.deb \
		--image-only $(TEST_DEB)/service.ext4 >$(TEST_DEB)/image.log 2>&1 & image=$$!; \
	scripts/vm-test; rc=$$?; \
	wait $$image || { tail -n 30 $(TEST_DEB)/image.log; echo "the service tier's image failed"; exit 1; }; \
	exit $$rc
	scripts/vm-service --image $(TEST_DEB)/service.ext4

# The Debian package, build/deb/lane-agent_<version>_<arch>.deb, checked by lintian: see debian/
# and scripts/build-deb. About a minute; the Python dependencies come pinned and hashed from
# debian/requirements.txt (scripts/lock-deb-requirements re-pins them from pyproject.toml).
deb:
	scripts/system-deps.sh deb
	scripts/build-deb

# Only the service tier (tests/service), building both packages; pytest arguments in ARGS.
.PHONY: test-service
test-service: system-deps $(STAMP)
	scripts/vm-service $(ARGS)

# Only the hardware tier; pytest arguments in ARGS, e.g. make test-hardware ARGS="-k acm -x".
.PHONY: test-hardware
test-hardware: system-deps $(STAMP)
	scripts/vm-test $(ARGS)

# lane-agent against barcode-server and nfc2mqtt, host then one VM boot; writes BENCHMARKS.md.
# The issue's counts by default (one to two hours); BENCH_ARGS=--quick for a ten-times shorter run.
BENCH_STAMP := .venv-bench/.installed
$(BENCH_STAMP): scripts/bench-venvs
	scripts/bench-venvs
	@touch $@

bench: system-deps $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench all $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Coverage-guided fuzzing (atheris) of the normaliser, GS1 parser, HID-POS decoder, serial framing
# and MQTT request decoder: FUZZ_RUNS inputs per target (fuzz/, seed corpus in fuzz/corpus/);
# not part of `make test`. FUZZ_ARGS=hidpos runs only the targets whose name contains it.
FUZZ_STAMP := $(VENV)/.installed-fuzz
FUZZ_RUNS ?= 1000000
$(FUZZ_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[fuzz]"
	@touch $@

.PHONY: fuzz
fuzz: $(FUZZ_STAMP)
	FUZZ_RUNS=$(FUZZ_RUNS) $(BIN)/python -m fuzz $(FUZZ_ARGS)

docs: $(STAMP)
	$(BIN)/python -m agent.docgen

clean:
	rm -rf $(VENV) .venv-bench .demo .pytest_cache .mypy_cache .ruff_cache build/bench \
		web/node_modules build/screenshots
