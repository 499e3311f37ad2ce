# The two commands: `make run` brings the whole app up, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test lint format chaos provider-chaos clean

run: $(STAMP)
	$(PY) manage.py up

test: $(STAMP)
	$(PY) -m pytest

# The long chaos run (the suite runs a 40-task version): work-horses SIGKILLed, Redis flushed mid-run.
chaos: $(STAMP)
	PIXELMILL_CHAOS_TASKS=$${PIXELMILL_CHAOS_TASKS:-2000} PIXELMILL_CHAOS_KILLS=$${PIXELMILL_CHAOS_KILLS:-10} \
	PIXELMILL_CHAOS_WORKERS=$${PIXELMILL_CHAOS_WORKERS:-4} $(PY) -m pytest tests/jobs/test_chaos.py -s -q

# A flaky provider under load (the suite runs 16 images): 500 images, two remote steps, the simulator's chaos preset.
provider-chaos: $(STAMP)
	PIXELMILL_PROVIDER_CHAOS_IMAGES=$${PIXELMILL_PROVIDER_CHAOS_IMAGES:-500} \
	PIXELMILL_PROVIDER_CHAOS_WORKERS=$${PIXELMILL_PROVIDER_CHAOS_WORKERS:-4} \
	$(PY) -m pytest tests/jobs/test_provider_chaos.py -s -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Pixelmill needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) var .pytest_cache
