# The two commands a newcomer needs: `make run` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test lint bench chaos soak venv clean messages backup restore demo

run: $(INSTALLED)
	scripts/ensure-system-packages.sh run
	$(PY) -m localenv.run

# With `make run` going in another terminal: a verified bakery with offers, played through the chat.
demo: $(INSTALLED)
	$(PY) -m sandbox.demo

# The tests run only on code that passes the static checks.
test: lint
	scripts/ensure-system-packages.sh test
	$(PY) -m pytest

# Static checks, configured in pyproject.toml: import layers, ruff, mypy. All three run, so one
# pass shows every finding; any finding fails the target.
lint: $(INSTALLED)
	@status=0; \
	$(VENV)/bin/lint-imports --no-logo || status=1; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

bench: $(INSTALLED)
	scripts/ensure-system-packages.sh bench
	$(PY) -m bench

# Fault drills under mixed traffic (Redis stopped REDIS_DOWN seconds, Postgres restarted, worker, beat
# and gateway killed), on private Redis and Postgres: bench/chaos.json and the chaos section of
# bench/report.md. `make chaos CHAOS_ARGS=--short REDIS_DOWN=10`: small traffic, short faults.
chaos: $(INSTALLED)
	REDIS_URL= DATABASE_URL= scripts/ensure-system-packages.sh run
	$(PY) -m bench.chaos $(if $(REDIS_DOWN),--redis-down $(REDIS_DOWN)) $(CHAOS_ARGS)

# Steady mixed traffic for MINUTES, every process's memory, open files and database connections
# sampled: bench/soak.json, bench/soak.png and the soak section of bench/report.md.
MINUTES ?= 30
soak: $(INSTALLED)
	REDIS_URL= DATABASE_URL= scripts/ensure-system-packages.sh run
	$(PY) -m bench.soak --minutes $(MINUTES)

venv: $(INSTALLED)

# Dump the database (DATABASE_URL, else make run's cluster) to backups/surplus-<UTC timestamp>.dump.
backup: $(INSTALLED)
	$(PY) -m localenv.backup dump

# Restore a dump over the database (stop `make run` first): make restore BACKUP=backups/surplus-....dump
restore: $(INSTALLED)
	$(PY) -m localenv.backup restore "$(BACKUP)"

# Rebuilt whenever a requirements file changes.
$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

# After changing user-facing text: refresh the catalogs, then translate the new entries.
messages: $(INSTALLED)
	$(VENV)/bin/pybabel extract -F babel.cfg -k _ -k N_ -k ngettext:1,2 -o locales/messages.pot --no-location --omit-header .
	$(VENV)/bin/pybabel update -i locales/messages.pot -d locales -D messages --no-wrap
