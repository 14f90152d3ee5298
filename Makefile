# `make run` and `make test` are the two commands a newcomer needs (see README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt

# The services pass runs the API and job tests again on PostgreSQL + Redis. Logical Redis databases
# 10-13 keep test traffic away from anything a developer runs on 0-3.
SERVICES_ENV := DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \
	REDIS_URL=redis://127.0.0.1:6379 REDIS_DB_BROKER=10 REDIS_DB_RESULTS=11 \
	REDIS_DB_CHANNELS=12 REDIS_DB_CACHE=13
# Production-like settings for `check --deploy` (throwaway keys, never used to serve; production
# needs a Fernet key in PORTAL_SECRET_KEYS: 32 random bytes in url-safe base64).
DEPLOY_ENV := DJANGO_SECRET_KEY=deploy-check-$(shell head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
	PORTAL_SECRET_KEYS=$(shell head -c 32 /dev/urandom | base64 | tr '+/' '-_') \
	DJANGO_DEBUG=false PORTAL_HTTPS=true DJANGO_ALLOWED_HOSTS=portal.example.com

.PHONY: run test install install-test lint check test-embedded test-engine test-portal \
	test-services bench clean

$(VENV)/.run-installed: requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.test-installed: $(VENV)/.run-installed requirements-test.txt
	$(PIP) -r requirements-test.txt
	touch $@

install: $(VENV)/.run-installed
install-test: $(VENV)/.test-installed

# The last step builds (or reuses) the demo mirror, registers it, serves the portal and stops the
# mirror again when the portal exits (scripts/run-portal).
run: install
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py ensure_demo_admin
	$(BIN)/python scripts/run-portal

# The passes share nothing (SQLite and in-process layers vs PostgreSQL and Redis; a test database
# per process; free ports are handed out under a lock, tests/engine/cluster_fixtures.py) and
# mostly wait on processes and sockets, so they run side by side: the slowest one sets the time.
# The embedded pass runs as two halves of about the same length: the engine's own tests and the
# attacks on it (real member processes, mostly waiting), and the rest (the portal's tests and the
# failover procedures of tests/faults). Each pass's output is printed whole when it ends.
test: install-test lint check
	$(MAKE) --no-print-directory -j3 --output-sync=target test-engine test-portal test-services

# lint-imports checks the import contracts of .importlinter (engine layers, no Django in the
# engine, the portal through the engine's public clients).
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

check:
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(DEPLOY_ENV) $(BIN)/python manage.py check --deploy --fail-level WARNING

ENGINE_TESTS = tests/engine tests/hostile

test-embedded: test-engine test-portal

test-engine:
	$(BIN)/pytest -m "not services" $(ENGINE_TESTS)

test-portal:
	$(BIN)/pytest -m "not services" $(addprefix --ignore=,$(ENGINE_TESTS))

test-services:
	@if scripts/services-up; then \
		$(SERVICES_ENV) $(BIN)/pytest -m "api or jobs or live or services"; \
	elif [ "$$CI" = "true" ]; then \
		echo "PostgreSQL and Redis are required on CI"; exit 1; \
	else \
		echo "SKIPPED the services pass: PostgreSQL/Redis not reachable on 127.0.0.1"; \
	fi

# bench/_*.py are modules the scripts import (bench/_common.py), not benchmarks: only
# bench/[!_]*.py are run.
bench: install-test
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) var
