# `make run`: the daemon with demo data on the embedded database. `make test`: the test suite.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium
NPM := /usr/bin/npm
ASYNCAPI_PARSER := tests/asyncapi/node_modules/@asyncapi/parser

.PHONY: run test clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,fast,picows]'
	touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot run
# here). Installed where missing; needs root, as on CI and the project's machines.
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# The AsyncAPI parser that checks `wsd schema`'s document (tests/test_schema_contract.py),
# pinned by tests/asyncapi/package-lock.json; Node and npm from Debian where missing.
$(NPM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null

$(ASYNCAPI_PARSER): tests/asyncapi/package-lock.json | $(NPM)
	cd tests/asyncapi && npm ci --no-audit --no-fund --silent

run: $(STAMP)
	$(VENV)/bin/wsd serve --demo

test: $(STAMP) $(CHROMIUM) $(ASYNCAPI_PARSER)
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) var build *.egg-info tests/asyncapi/node_modules
