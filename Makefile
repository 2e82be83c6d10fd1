# The project's commands. `make serve` and `make test` are all a fresh machine needs
# (besides Python 3.11 and Java 17, see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)

.PHONY: help venv check-java model serve test test-unit test-integration bench clean

help:
	@echo "make serve   build the default model if missing, then serve it with TorchServe (foreground)"
	@echo "make test    run the whole test suite (unit + integration); .ci/run calls this"
	@echo "make model   build model_store/lizaalert_tagger.mar if missing"
	@echo "make bench   benchmark in-process vs served vs the seed-style baseline"
	@echo "make clean   remove run/ and build/ (keeps .venv and model_store)"

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is needed, found {sys.version.split()[0]}"' \
		|| { echo "Set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

check-java:
	@command -v java >/dev/null || { echo "Java 17 is needed by TorchServe's frontend: install a JDK/JRE 17 (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }

model: venv
	$(PY) scripts/build_default.py

serve: venv check-java model
	$(PY) scripts/serve.py

test: venv check-java
	$(PY) scripts/run_tests.py

bench: venv check-java model
	$(PY) scripts/bench.py

clean:
	rm -rf run build
