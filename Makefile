# The README's commands. Each bootstraps its own virtual environment (.venv) on first use;
# re-runs skip the install unless pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo
# LightGBM's OpenMP threads busy-wait on a loaded 2-core box (see ../shared/FIELD-NOTES.md).
export OMP_WAIT_POLICY := passive

.PHONY: demo test test-slow bench clean browser

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "repfit needs Python >= 3.11; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/repfit synth --out $(DEMO)/org --reps 40 --accounts 2000 --seed 7
	$(BIN)/repfit validate --data $(DEMO)/org
	@echo "a CRM export as it comes: one HubSpot-shaped deals file with planted dirty rows, read by the preset"
	$(BIN)/repfit synth --out $(DEMO)/hubspot --reps 12 --accounts 300 --seed 5 --format hubspot
	$(BIN)/repfit validate --data $(DEMO)/hubspot/deals.csv --mapping hubspot --on-bad-rows quarantine \
	  --rejected $(DEMO)/hubspot/rejected_rows.csv
	$(BIN)/repfit train --data $(DEMO)/org
	$(BIN)/repfit score --data $(DEMO)/org --out $(DEMO)/scores.parquet
	$(BIN)/repfit assign --data $(DEMO)/org --scores $(DEMO)/scores.parquet --out $(DEMO)/assignment.csv \
	  --balance-tiers --continuity 0.05 --balance potential=10% --balance accounts=10%
	$(BIN)/repfit suggest --data $(DEMO)/org --scores $(DEMO)/scores.parquet --all --max-moves 200 \
	  --balance-tiers --out $(DEMO)/suggestions.csv
	$(BIN)/repfit capacity --data $(DEMO)/org --scores $(DEMO)/scores.parquet --out $(DEMO)/capacity.csv
	$(BIN)/repfit report --data $(DEMO)/org --scores $(DEMO)/scores.parquet --balance-tiers --continuity 0.05 \
	  --balance potential=10% --balance accounts=10% --out $(DEMO)/report.html
	@echo "open $(DEMO)/report.html in a browser; runs and models: $(BIN)/mlflow ui --backend-store-uri sqlite:///$$PWD/mlruns/mlflow.db"
	@echo "the ops workbench (review, adjust and approve the suggestions in a browser; Ctrl-C stops it):"
	@echo "  $(BIN)/repfit serve --data $(DEMO)/org --scores $(DEMO)/scores.parquet --balance-tiers --max-moves 200"
	@echo "  then open http://127.0.0.1:8765/ (API docs at http://127.0.0.1:8765/docs)"

# The report's and the workbench's tests render pages in Debian's Chromium: install it when missing (needs root or
# passwordless sudo). The workbench's test drives it with Playwright for Python (the test extra) pointed at
# /usr/bin/chromium: Playwright's own browser download (`playwright install`) is never used.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  echo "installing Debian's chromium for the browser tests"; \
	  ( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium ) >/dev/null \
	  || echo "could not install chromium: the browser test will be skipped"; }

# pyproject's addopts deselect the slow tests (-m 'not slow'); a later -m on the command line replaces it.
test: $(STAMP) browser
	$(BIN)/python -m pytest --durations=10

test-slow: $(STAMP) browser
	$(BIN)/python -m pytest -m slow --durations=10

bench: $(STAMP)
	$(BIN)/python benchmarks/winprob_quality.py
	$(BIN)/python benchmarks/assign_quality.py
	$(BIN)/python benchmarks/suggest_quality.py
	$(BIN)/python benchmarks/assign_scale.py

clean:
	rm -rf $(DEMO) $(VENV) build src/*.egg-info
