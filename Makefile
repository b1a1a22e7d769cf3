# The two commands: `make run` starts the service, `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine's pip serves these from disk; elsewhere any torch>=2.2 works.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: run test test-fast bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: venv
	$(VENV)/bin/nst --config config.toml serve

test: venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m 'not slow'

bench: venv
	$(PY) bench/bench.py

clean:
	rm -rf $(VENV) build *.egg-info
