# Two commands do everything on a fresh machine: `make run` and `make test`.
PY      := .venv/bin/python
STAMP   := .venv/.requirements.installed
PORT    ?= 8501
PYTEST_ARGS ?=

.PHONY: run test test-fast system-deps bench clean

$(PY):
	python3 -m venv .venv

# Reinstall only when requirements.txt or pyproject.toml changed. The project itself goes in editable, with no
# dependencies of its own (requirements.txt pinned them): .venv/bin/saliency is the console command.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run app.py --server.headless true --server.port $(PORT) --browser.gatherUsageStats false

# Chromium (browser tests) and PostgreSQL (study tests) from Debian when missing.
system-deps:
	bash scripts/install_system_deps.sh

test: $(STAMP) system-deps
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Everything but the browser and the slow tests, for a quick loop while developing.
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow and not e2e" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/overhead.py

clean:
	rm -rf .venv .cache .pytest_cache
