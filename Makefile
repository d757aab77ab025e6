# The set-up contract: `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/demo

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: 2.13.0 is the local CPU build; any other version pulls GBs of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/osmotic demo --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check src tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/bench_osml.py
	$(PY) benchmarks/bench_holonic.py
	$(PY) benchmarks/bench_ray.py
	$(PY) benchmarks/bench_ray_holonic.py
	$(PY) benchmarks/bench_dssl.py
	$(PY) benchmarks/osml_reproduce.py
	$(PY) benchmarks/osml_scenarios.py
	$(PY) benchmarks/own_data.py
	$(PY) benchmarks/privacy_study.py
	$(PY) benchmarks/osml_privacy.py
	$(PY) benchmarks/async_study.py
	$(PY) benchmarks/osml_async.py

lint: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check src tests benchmarks examples

clean:
	rm -rf $(VENV) runs

# Property-based fuzzing of the command line (tests/fuzz): `make test` runs a few examples per
# test; this runs many more (FUZZ_SCALE=2 doubles them), goes on past failures, lists each
# distinct one with its smallest case (all of them in .hypothesis/fuzz-failures.jsonl) and
# prints how many cases ran.
.PHONY: fuzz
fuzz: $(STAMP)
	rm -f .hypothesis/fuzz-failures.jsonl
	HYPOTHESIS_PROFILE=fuzz OSMOTIC_FUZZ_COLLECT=.hypothesis/fuzz-failures.jsonl \
		$(PY) -m pytest tests/fuzz -p no:cacheprovider --hypothesis-show-statistics
