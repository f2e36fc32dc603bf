# Set-up is part of every target: a fresh machine only needs python3 >= 3.11 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; a GPU machine can override, e.g. TORCH_SPEC="torch==2.13.0" with its own index.
TORCH_SPEC ?= torch==2.13.0
# Real sample CXRs (Kermany et al., CC BY 4.0) ship inside this wheel; its own dependencies are not needed.
SAMPLE_WHEEL ?= pneumonia-model-package==0.3.0
STAMP := $(VENV)/.installed

.PHONY: setup test demo clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,dicom]"
	$(BIN)/python -m pip install -q --no-deps "$(SAMPLE_WHEEL)"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

demo: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m train.demo

clean:
	rm -rf $(VENV) outputs .pytest_cache
