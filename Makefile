# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_PORT ?= 8000
export PYTHONPATH := $(CURDIR)

.PHONY: install chromium test test-postgres lint matrix package docs settings-doc demo bench clean

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(PIP) install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	$(PY) -c "import django, rest_framework, tracking, detectors.rulepack"
	touch $@

install: $(VENV)/.installed

# The browser tests (tests/test_browser.py) drive Debian's chromium; install it when missing.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

test: install chromium
	$(PY) -m pytest -q

test-postgres: install chromium
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(PY) -m pytest -q

# ruff, then the import contracts of pyproject.toml ([tool.importlinter]: layers, no cycles).
lint: install
	$(VENV)/bin/ruff check tracking detectors tests example benchmarks tools noxfile.py .ci
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Every supported Python x Django pair (noxfile.py; needs python3.10 ... python3.13 on PATH).
matrix: install chromium
	$(VENV)/bin/nox --reuse-existing-virtualenvs

# Build the sdist and wheel, check their metadata, install each in a fresh venv and smoke-test it.
package: install
	rm -rf dist
	$(PY) -m build -q --outdir dist .
	$(VENV)/bin/twine check --strict dist/*
	$(PY) .ci/smoke_package.py dist

# The documentation site (mkdocs.yml, docs/): built offline into build/site, warnings are errors.
docs: install
	$(PY) -m tools.settings_doc --check
	$(VENV)/bin/mkdocs build --strict

# docs/settings.md, the settings reference, regenerated from tracking/conf.py.
settings-doc: install
	$(PY) -m tools.settings_doc

# Migrate SQLite, build demo GeoIP databases, fill ~4 days of traffic for 50 users (with
# attacks), create `admin` (password: $DEMO_PASSWORD, or generated and printed), then serve.
demo: install
	$(PY) example/manage.py demo_setup --port $(DEMO_PORT)
	$(PY) example/manage.py runserver --insecure --noreload 127.0.0.1:$(DEMO_PORT)

# Benchmarks need the alternatives they compare against (extra `bench`) and wrk.
bench: install
	$(PIP) install -q -e '.[bench]' 2>&1 | grep -v '^WARNING: Location' || true
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) var example/var build dist .nox *.egg-info
