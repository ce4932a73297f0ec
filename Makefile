# Two entry points, both self-contained on a fresh machine:
#   make site   -> create .venv, install pinned dependencies, build the book into _build/html
#   make test   -> same set-up, then run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: site test clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

site: $(STAMP)
	$(VENV)/bin/jupyter-book build --warningiserror --nitpick . --path-output _build/site
	@echo "site built: _build/site/_build/html/index.html"

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf _build
