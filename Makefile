# Two commands do all set-up on a fresh machine:
#   make demo   creates or reuses .venv, installs, runs the main job on the embedded data
#   make test   creates or reuses .venv, installs, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-synthpm

.PHONY: demo test fuzz lint bench clean

# torch is pinned to 2.13.0 in pyproject (a CPU wheel on these machines); pip resolves the
# rest from the package index. Re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,live,llm,text,learn,dist,serve]"
	# xgrammar (schema-constrained decoding) lists triton, ~1 GB and GPU-only, as a dependency:
	# install it alone; its one runtime dependency, apache-tvm-ffi, is in the llm extra.
	$(BIN)/python -m pip install --quiet --no-deps "xgrammar==0.2.8"
	touch $@

demo: $(STAMP)
	$(BIN)/synthpm demo --out runs/demo

# Two worker processes, each taking whole test files (a file's fixtures are built once): much
# of the suite waits on subprocesses and files, so a second worker uses the idle core.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The long fuzz and kill suite (issue 23): 1,000 cases per input surface and 50 kill points
# per write path, against the few dozen of `make test`; about 15 minutes on 2 cores.
fuzz: $(STAMP)
	SYNTHPM_FUZZ_EXAMPLES=1000 SYNTHPM_KILL_POINTS=50 $(BIN)/python -m pytest -q \
		tests/test_fuzz_importers.py tests/test_fuzz_outputs.py tests/test_fuzz_cli.py tests/test_fuzz_api.py \
		tests/test_kill.py

lint: $(STAMP)
	$(BIN)/ruff check synthpm tests benchmarks
	$(BIN)/ruff format --check synthpm tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/import_bench.py
	$(BIN)/python benchmarks/forecast_bench.py
	$(BIN)/python benchmarks/dataset_bench.py

clean:
	rm -rf $(VENV) runs .pytest_cache
