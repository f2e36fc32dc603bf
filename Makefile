# Set-up is part of every target: a fresh machine only needs python3 >= 3.11 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pip picks the build: CPU where its configuration offers one (as on our CI machines), else PyPI's (CUDA on Linux);
# e.g. TORCH_SPEC="torch==2.13.0+cpu" with PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu for the CPU one.
TORCH_SPEC ?= torch==2.13.0
# Real sample CXRs (Kermany et al., CC BY 4.0) ship inside this wheel; its own dependencies are not needed.
SAMPLE_WHEEL ?= pneumonia-model-package==0.3.0
STAMP := $(VENV)/.installed

.PHONY: setup test demo offline clean

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

# For an offline GPU host whose image already holds torch, numpy, pyarrow, accelerate and huggingface_hub:
# offline/wheels, the packages such images lack at the versions installed here, for its Python (WHEEL_PYTHON),
# offline/cache, the verified sample images (no need for their 120 MB of source packages), and offline/data, the
# benchmark data (DATA, if present) resized to 224 px for benchmarks/gpu_quality.sh. There:
#   pip install --no-index --no-deps --target DIR offline/wheels/*.whl
#   export PYTHONPATH=DIR:$PWD CXRGM_CACHE=$PWD/offline/cache
# (benchmarks/gpu.sh and gpu_quality.sh do this themselves when they find ./offline).
WHEEL_PYTHON ?= 3.12
OFFLINE ?= offline
OFFLINE_PACKAGES ?= transformers datasets evaluate pydicom dill multiprocess
DATA ?= ../shared/data

offline: setup
	rm -rf $(OFFLINE)
	$(BIN)/python -m pip freeze | grep -iE '^($(subst $(eval) ,|,$(strip $(OFFLINE_PACKAGES))))==' > $(VENV)/offline.txt
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version $(WHEEL_PYTHON) \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		-d $(OFFLINE)/wheels -r $(VENV)/offline.txt
	CXRGM_CACHE=$(OFFLINE)/cache $(BIN)/python -c "from hf_datasets.builders.sample import sample_files; sample_files()"
	test ! -d $(DATA) || $(BIN)/python -m benchmarks.bundle_data --data_dir $(DATA) --output_dir $(OFFLINE)/data --size 224
	du -sh $(OFFLINE)/*

clean:
	rm -rf $(VENV) outputs .pytest_cache $(OFFLINE)
