# The two commands of the README: `make demo` and `make test` (`make docs` builds the site).
# Both build .venv from requirements.lock first (mxnet 1.9.1 needs numpy<1.24).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test docs lint bench clean

# Horovod 0.28.1 builds from its source package against the pinned mxnet (Gloo only, no MPI;
# about 4 minutes on 2 cores, once: pip caches the wheel). A step of its own, after mxnet,
# numpy, wheel and packaging: pip builds every source package before installing any.
HOROVOD_FLAGS := HOROVOD_WITH_MXNET=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
	HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 MAKEFLAGS=-j2

# The lock first: it pins Cython and wheel, which GluonNLP 0.10.0 (optional, tested:
# BERT classifiers in get_model) needs to build from its source package, without
# build isolation so that it builds against the pinned numpy and Cython.
$(STAMP): requirements.lock setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-build-isolation gluonnlp==0.10.0
	$(HOROVOD_FLAGS) $(PY) -m pip install -q --no-build-isolation horovod==0.28.1
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(VENV): $(STAMP)

demo: $(STAMP)
	$(PY) -m gluon_finetune.demo

test: $(STAMP)
	$(PY) -m pytest -q --doctest-modules gluon_finetune tests

# --strict: a broken link, a missing page or an unresolved API name fails the build.
# Offline: nothing is fetched at build time (mkdocs.yml says how).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

bench: $(STAMP)
	$(PY) bench/import_time.py
	$(PY) bench/step_overhead.py
	$(PY) bench/fused_sgd.py
	$(PY) bench/freezing_payoff.py
	$(PY) bench/feature_cache.py
	$(PY) bench/bert_step.py
	$(PY) bench/lora_bert.py
	$(PY) bench/lr_find_cost.py
	$(PY) bench/run_throughput.py

# ruff, then the import contracts of .importlinter (layers, the pure rule engine, optim
# without mxnet.gluon, recipes through the trainer's public API).
lint: $(STAMP)
	$(VENV)/bin/ruff check gluon_finetune tests examples bench
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site
