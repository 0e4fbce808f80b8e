# The two set-up commands of the README: `make run` and `make test`.
# Each creates the virtual environment from the pinned requirements on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench system-packages

run: $(VENV)/.runtime
	$(BIN)/flask --app app setup
	$(BIN)/gunicorn --config gunicorn.conf.py app:app

test: $(VENV)/.test system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(VENV)/.test
	$(BIN)/python -m bench

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $@

$(VENV)/.runtime: $(VENV)/.created requirements.txt requirements-cpu.txt
	$(BIN)/pip install --quiet -r requirements-cpu.txt
	touch $@

$(VENV)/.test: $(VENV)/.runtime requirements-test.txt
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

# The tests also need Debian's Chromium (browser tests; never a downloaded browser), PostgreSQL
# and Redis (the scale-out tests start their own servers on 127.0.0.1).
system-packages:
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	 ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	 command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	 if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; fi
