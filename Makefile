# Every target sets up its own virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/demo
SIZE ?= 200MB

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/smr generate text --size $(SIZE) --files 4 --seed 1 --output $(DATA)/input
	$(VENV)/bin/smr run examples/wordcount.py --input $(DATA)/input --output $(DATA)/output \
		--work-dir $(DATA)/work --reducers 2 --overwrite
	$(VENV)/bin/python examples/show_output.py $(DATA)/output

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(BENCH_VENV) data .pytest_cache

# Benchmarks run in their own environment, with the peers (Lithops, Dask, PySpark, DuckDB).
BENCH_VENV ?= .venv-bench
BENCH_ARGS ?=

$(BENCH_VENV)/.installed: pyproject.toml benchmarks/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q -e '.[dev]' -r benchmarks/requirements.txt
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m benchmarks.run $(BENCH_ARGS)
