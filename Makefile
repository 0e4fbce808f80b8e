# The two set-up commands of the README: `make run` and `make test`.
# Each creates the virtual environment from the pinned requirements on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench chromium

run: $(VENV)/.runtime
	$(BIN)/flask --app app setup
	$(BIN)/gunicorn --config gunicorn.conf.py app:app

test: $(VENV)/.test chromium
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

# Browser tests drive Debian's Chromium; it is installed from the distribution, never downloaded.
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }
