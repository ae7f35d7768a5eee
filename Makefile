# The README's commands. Each bootstraps its own virtual environment (.venv) on first use;
# re-runs skip the install unless pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo
# LightGBM's OpenMP threads busy-wait on a loaded 2-core box (see ../shared/FIELD-NOTES.md).
export OMP_WAIT_POLICY := passive

.PHONY: demo test test-slow bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "repfit needs Python >= 3.11; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/repfit synth --out $(DEMO)/org --reps 40 --accounts 2000 --seed 7
	$(BIN)/repfit validate --data $(DEMO)/org
	$(BIN)/repfit train --data $(DEMO)/org
	$(BIN)/repfit score --data $(DEMO)/org --out $(DEMO)/scores.parquet
	$(BIN)/repfit assign --data $(DEMO)/org --scores $(DEMO)/scores.parquet --out $(DEMO)/assignment.csv \
	  --balance-tiers --continuity 0.05

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/winprob_quality.py
	$(BIN)/python benchmarks/assign_quality.py
	$(BIN)/python benchmarks/assign_scale.py

clean:
	rm -rf $(DEMO) $(VENV) build src/*.egg-info
