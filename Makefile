# Developer habits (STYLE.md §14). CI (.ci/run) runs the same tools.
PY ?= .venv/bin/python
VENV ?= .venv
ENV ?= resrl/Echo-v0

.PHONY: install fmt lint test test-all serve

install:  ## a venv with torch pinned to the local CPU wheel, the package and the dev tools
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install torch==2.13.0 -e ".[train,dev]"

fmt:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test:  ## fast tier: skips slow, ray, gpu and vllm tests (under a minute)
	$(PY) -m pytest -m "not slow and not ray and not gpu and not vllm" -q

test-all:  ## what CI runs: every marker but gpu and vllm
	$(PY) -m pytest -m "not gpu and not vllm" -q

serve:
	$(VENV)/bin/resrl-agent serve env --envs $(ENV)
