# Two entry points: `make run` (the default profile, end to end) and `make test`.
# Both create .venv on first use and install the pinned environment of requirements.lock.
# KEEP_TORCH=1 keeps a torch/torchvision already in the environment (a cluster's CUDA build):
#   python3 -m venv --system-site-packages .venv && KEEP_TORCH=1 make run
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.skipinit-installed
CORES ?= all
PROFILE ?= config/config.yaml
RESULTS ?= results/reference/default
TORCH_PACKAGES := ^(torch|torchvision|triton|nvidia-.*|cuda-.*)==

GPUS ?= 1

.PHONY: run test smoke tables plan lint install browser clean-env

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
ifeq ($(KEEP_TORCH),1)
	grep -v -E '$(TORCH_PACKAGES)' requirements.lock > $(VENV)/requirements.keep-torch.txt
	$(BIN)/python -m pip install -q -r $(VENV)/requirements.keep-torch.txt
else
	$(BIN)/python -m pip install -q -r requirements.lock
endif
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m skipinit check-profile $(PROFILE)
	$(BIN)/snakemake --cores $(CORES) --configfile $(PROFILE) --workflow-profile workflow/profiles/default

test: $(STAMP) browser
	$(BIN)/python -m pytest

# Headless Chromium for the test that opens the Snakemake report (tests/test_figures.py): Debian's
# package where apt-get and root are at hand; elsewhere that test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	echo "chromium not installed: the report-in-a-browser test will skip"

smoke: $(STAMP)
	$(BIN)/python -m skipinit check-profile config/smoke.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile config/smoke.yaml --workflow-profile workflow/profiles/default

# Rebuild figures, tables and claims.json from existing runs.parquet/signal.parquet alone (no training),
# then the scorecard (results/scorecard.{md,html}): the verdicts of $(RESULTS) and of the committed references.
SCORECARD_RESULTS ?= results/reference/default results/reference/gpu  # with RESULTS, each folder once
tables: $(STAMP)
	$(BIN)/python -m skipinit report --results $(RESULTS)
	$(BIN)/python -m skipinit scorecard --claims $(addsuffix /claims.json,$(sort $(RESULTS) $(SCORECARD_RESULTS))) --out results/scorecard.md

# A profile's compute plan: jobs, GPU-hours, wall time on GPUS GPUs, disk, SLURM time limits (no training).
plan: $(STAMP)
	$(BIN)/python -m skipinit plan --profile $(PROFILE) --gpus $(GPUS)

# The workflow (Snakemake's linter, snakefmt) and the Python (ruff: pyflakes, pycodestyle, isort, bugbear,
# pyupgrade, and its formatter; configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

clean-env:
	rm -rf $(VENV)
