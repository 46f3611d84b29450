# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first so that users on GPU machines can pick their build: make demo TORCH_SPEC='torch==2.6.0'
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.ipvg-installed
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	# insightface pulls the GUI OpenCV build (needs libGL); keep only the headless one, which shares its files.
	$(BIN)/python -m pip uninstall -q -y opencv-python
	$(BIN)/python -m pip install -q --force-reinstall --no-deps "opencv-python-headless>=4.8"
	$(BIN)/python -c "import cv2, av, torch, diffusers; from ipvgkit.media import ffmpeg_info; print('ffmpeg:', ffmpeg_info().path)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ipvg demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pack.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
