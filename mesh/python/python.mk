# Python: a project virtualenv (.venv) with the pinned packages of mesh/python/requirements.txt
# (grpcio, grpcio-tools for `make gen`, pytest). Without python3 (3.10 or later), outside CI, it is
# named and skipped; under CI it fails.
PYTHON3 ?= python3
VENV := $(CURDIR)/.venv
VENV_PYTHON := $(VENV)/bin/python
PYTHON_REQUIREMENTS := mesh/python/requirements.txt

$(VENV)/.installed: $(PYTHON_REQUIREMENTS)
	@if $(PYTHON3) -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then \
	  echo "$(PYTHON3) -m venv $(VENV) && pip install -r $(PYTHON_REQUIREMENTS)"; \
	  $(PYTHON3) -m venv $(VENV) && $(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check -r $(PYTHON_REQUIREMENTS) && touch $@; \
	elif [ -n "$(IS_CI)" ]; then \
	  echo "Python 3.10 or later is required (CI=$(CI)): install python3 and python3-venv" >&2; exit 1; \
	else \
	  echo "Python 3.10 or later not found: the Python kit, pricing and their tests are skipped (install python3 and python3-venv)" >&2; \
	fi

python-env: $(VENV)/.installed ## create .venv with the Python kit's pinned packages (needs python3)
