# Two commands set up everything: `make demo` and `make test`.
# Both create (or reuse) the virtual environment .venv and install robustviz into it with every
# extra (.[all]: the notebooks' JupyterLab and the test tools; a plain `pip install .` is the core only).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torchattacks is only a reference for tests and benchmarks. It is installed without its
# dependencies: it pins requests~=2.25.1, which conflicts with jupyterlab-server, and never imports it.
TEST_STAMP := $(VENV)/.installed-test
TORCHATTACKS := torchattacks==3.5.1

.PHONY: demo test lab lint bench bench-gpu student-notebooks clean

demo: $(STAMP)
	$(BIN)/robustviz demo

test: $(TEST_STAMP)
	scripts/install-chromium
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(TEST_STAMP)
	$(BIN)/python bench/run.py

# The GPU check (bench/gpu.py, at most 8 minutes on one H100/H200): writes docs/gpu.md.
# CIFAR-10 is read from $(CIFAR) when that file exists.
CIFAR ?= ../shared/datasets/cifar10-jpg.tar.gz
bench-gpu: $(TEST_STAMP)
	$(BIN)/python bench/gpu.py $(if $(wildcard $(CIFAR)),--cifar $(CIFAR))

# The course without its solutions, for students: build/student-notebooks/*.ipynb
student-notebooks: $(STAMP)
	$(BIN)/python scripts/student_notebooks.py

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "robustviz needs Python >= 3.10"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[all]"
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --no-deps "$(TORCHATTACKS)"
	touch $(TEST_STAMP)

clean:
	rm -rf $(VENV) results .pytest_cache
