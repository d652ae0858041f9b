# The two commands a newcomer needs: `make run` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test lint bench venv clean messages backup restore demo

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
