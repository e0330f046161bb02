# The two commands of the README: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: install demo test test-heavy bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/funduslab demo --out demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not heavy"

# the heavy tests (DDP subprocesses, full-size ViT/Swin builds): CI runs them after `make test`
test-heavy: $(STAMP)
	$(BIN)/python -m pytest -q -m heavy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_synth.py

clean:
	rm -rf $(VENV) demo runs
