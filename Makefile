# The project's commands. `make serve` and `make test` are all a fresh machine needs
# (besides Python 3.11 and Java 17, see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-12)

.PHONY: help venv check-java system-tools model train-default serve test bench clean clean-model

help:
	@echo "make serve   build the default model if missing, then serve it with TorchServe (foreground)"
	@echo "make test    run the whole test suite (unit + integration); .ci/run calls this"
	@echo "make model   build model_store/lizaalert_tagger.mar from the shipped weights (models/default/)"
	@echo "make train-default  retrain the shipped weights from scratch (hours on 2 CPU cores)"
	@echo "make bench   benchmark in-process vs served vs the seed-style baseline"
	@echo "make clean   remove run/ and build/ (keeps .venv and model_store)"
	@echo "make clean-model  remove the default archive (the next make serve/test rebuilds it)"

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is needed, found {sys.version.split()[0]}"' \
		|| { echo "Set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

check-java:
	@command -v java >/dev/null || { echo "Java 17 is needed by TorchServe's frontend: install a JDK/JRE 17 (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }

# Debian packages the integration tests use: a real Prometheus (+ promtool), the load generator hey,
# nginx + envsubst (the pod's token proxy) and Chromium (the field report in a real browser).
system-tools:
	bash scripts/install_system_tools.sh prometheus hey nginx gettext-base chromium

# The archive of the shipped default weights (models/default/): seconds, no training.
model: venv
	$(VENV)/bin/lizaalert-default-model

# Retrain the shipped default weights from scratch (about 3 minutes on an H200, about 9 hours on 2 CPU cores; README "The default model").
train-default: venv
	$(VENV)/bin/lizaalert-default-model --train

serve: venv check-java model
	$(VENV)/bin/lizaalert-serve

# The tests include the shipped default model's served score, so the model is built first.
test: venv check-java system-tools model
	$(PY) scripts/run_tests.py

bench: venv check-java system-tools model
	$(VENV)/bin/lizaalert-bench

clean:
	rm -rf run build

clean-model:
	rm -f model_store/lizaalert_tagger.mar
