# Python: a project virtualenv (.venv) with the pinned packages of mesh/python/requirements.txt
# (grpcio, grpcio-tools for `make gen`, pytest), the kit (mesh/python, installed editable) and
# generated/python on the venv's path (a .pth file), so `.venv/bin/python <script>` imports
# protomesh_kit and the generated stubs with no PYTHONPATH. Without python3 (3.10 or later),
# outside CI, it is named and skipped; under CI it fails.
PYTHON3 ?= python3
VENV := $(CURDIR)/.venv
VENV_PYTHON := $(VENV)/bin/python
PYTHON_REQUIREMENTS := mesh/python/requirements.txt
PYTHON_MISSING := Python 3.10 or later not found: the Python kit, pricing and their tests are skipped (install python3 and python3-venv, e.g. apt-get install python3 python3-venv)

$(VENV)/.installed: $(PYTHON_REQUIREMENTS) mesh/python/pyproject.toml
	@if $(PYTHON3) -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then \
	  echo "$(PYTHON3) -m venv $(VENV) && pip install -r $(PYTHON_REQUIREMENTS) && pip install -e mesh/python"; \
	  $(PYTHON3) -m venv $(VENV) && $(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check -r $(PYTHON_REQUIREMENTS) && \
	  $(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e mesh/python && \
	  echo "$(CURDIR)/generated/python" > "$$($(VENV_PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/protomesh-generated.pth" && \
	  touch $@; \
	elif [ -n "$(IS_CI)" ]; then \
	  echo "Python 3.10 or later is required (CI=$(CI)): install python3 and python3-venv" >&2; exit 1; \
	else \
	  echo "$(PYTHON_MISSING)" >&2; \
	fi

python-env: $(VENV)/.installed ## create .venv with the Python kit's pinned packages and the kit itself (needs python3)

# The Python kit's and pricing's suites. They start the TypeScript control plane and catalog from
# dist/ (build it first: `make build`) and need node; without node, outside CI, those tests skip
# saying why; under CI they fail.
.PHONY: python-test
python-test: python-env ## run the Python kit's, pricing's and the Python interop program's pytest suites
	@if [ -x $(VENV_PYTHON) ]; then \
	  $(VENV_PYTHON) -m pytest -c mesh/python/pyproject.toml --rootdir . mesh/python services/pricing test/interop/python; \
	elif [ -n "$(IS_CI)" ]; then \
	  echo "Python 3.10 or later is required (CI=$(CI)) for python-test: install python3 and python3-venv" >&2; exit 1; \
	else \
	  echo "$(PYTHON_MISSING)" >&2; \
	fi
