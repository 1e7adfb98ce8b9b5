# mner: `make demo` sets up and runs the pipeline on the bundled sample; `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
# The CPU wheel; a GPU user sets e.g. TORCH="torch==2.13.0 --index-url <their CUDA index>".
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup demo test benchmark clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)  # first: a loose torch requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/mner run

test: setup
	$(BIN)/python -m pytest -q

benchmark: setup
	bash benchmarks/run_stage2.sh

clean:
	rm -rf artifacts/*/ .prefect
