# Two commands: `make demo` and `make test`. Both set up what they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export AIRFLOW_HOME ?= $(CURDIR)/.airflow/test

.PHONY: venv test lint demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/tests/dags AIRFLOW__CORE__LOAD_EXAMPLES=False \
	  $(PY) -m airflow db migrate > /dev/null
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: venv
	$(PY) -m demo.run $(ARGS)

clean:
	rm -rf $(VENV) .airflow .demo
