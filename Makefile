# The two set-up commands of the README: `make run` and `make test`.
# Each creates the virtual environment from the pinned requirements on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-random bench demo system-packages nginx-site

# Freed buffers of 4 MB and more go back to the system at once: without it, 16 concurrent large
# photos leave a worker at 2.5 GB instead of 1.3 GB (bench.large_photos --server-only).
run: export MALLOC_MMAP_THRESHOLD_ = 4194304
run: $(VENV)/.runtime
	$(BIN)/flask --app app setup
	$(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

# Two test processes (pytest-xdist), each taking whole files: half the time on two cores, since many tests
# wait on servers, jobs and the browser. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: $(VENV)/.test system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The same tests in a random order (pytest-randomly): none may depend on another's leftovers.
test-random: $(VENV)/.test system-packages
	$(BIN)/python -m pytest -p randomly

bench: $(VENV)/.test
	$(BIN)/python -m bench

# The workflow on a demo dataset (two people from the photos scikit-image and matplotlib ship,
# hence the test requirements): import, training, activation. A demo, not a clinical model.
demo: $(VENV)/.test
	$(BIN)/flask --app app setup
	$(BIN)/flask --app app demo

# deploy/nginx.conf with this machine's values, for nginx in front of `make run` (docs/operations.md):
#   make nginx-site TLS_DIR=/etc/facedx/tls > /etc/nginx/conf.d/facedx.conf
UPSTREAM ?= 127.0.0.1:8000
TLS_DIR ?= /etc/facedx/tls
HTTPS_PORT ?= 443
HTTP_PORT ?= 80
nginx-site:
	@sed -e 's|$${FACEDX_UPSTREAM}|$(UPSTREAM)|g' -e 's|$${FACEDX_TLS_DIR}|$(TLS_DIR)|g' \
	    -e 's|$${FACEDX_HTTPS_PORT}|$(HTTPS_PORT)|g' -e 's|$${FACEDX_HTTP_PORT}|$(HTTP_PORT)|g' deploy/nginx.conf

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
# and Redis (the scale-out tests start their own servers on 127.0.0.1), nginx and openssl (the
# proxy tests run deploy/nginx.conf with a self-signed certificate in front of gunicorn).
system-packages:
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	 ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	 command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	 command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	 command -v openssl >/dev/null || missing="$$missing openssl"; \
	 if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; fi
