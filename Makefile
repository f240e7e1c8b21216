# One command per task. Each target builds the venv first, so a fresh clone needs only `make X`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU build of torch, pinned: a looser requirement lets pip pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,bench,parquet,serving]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/recstream demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy stream store trainer

bench: $(STAMP)
	$(BIN)/python -m bench --quick -o bench-report

clean:
	rm -rf $(VENV) build *.egg-info
