# `make run`: the daemon with demo data on the embedded database. `make test`: the test suite.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,fast]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/wsd serve --demo

test: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) var build *.egg-info
