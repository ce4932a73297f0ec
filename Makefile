# Two entry points, both self-contained on a fresh machine:
#   make site   -> create .venv, install pinned dependencies, build the book into _build/site/_build/html
#   make test   -> same set-up, then run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# MathJax 3 served from the venv, so the site typesets equations offline;
# Debian's chromium for the browser test (tests/test_site.py).
SITE_STAMP    := $(VENV)/.site-tools
BROWSER_STAMP := $(VENV)/.browser
MATHJAX       := django-static-mathjax==3.2.2.1
SUDO          := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: site test clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

$(SITE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet $(MATHJAX)
	touch $@

$(BROWSER_STAMP): $(STAMP)
	command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	touch $@

# --all: every page is rebuilt and re-executed, so the site always shows the current records.
# The records are read first: a damaged one is named here (file and fault), not as a page that failed to execute.
site: $(SITE_STAMP)
	$(PY) -m kps.results results
	$(VENV)/bin/jupyter-book build --all --warningiserror --nitpick . --path-output _build/site
	@echo "site built: _build/site/_build/html/index.html"

test: $(STAMP) $(SITE_STAMP) $(BROWSER_STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf _build
