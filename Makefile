# The two commands: `make run` brings the whole app up, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test lint format chaos chaos-postgres provider-chaos clean

run: $(STAMP)
	$(PY) manage.py up

test: $(STAMP)
	$(PY) -m pytest

# The long chaos run, timed as in production (the suite runs a 50-task version): 2,000 tasks, 10 SIGKILLs of
# whole workers and 10 of work-horses, Redis emptied half way; chaos-postgres also restarts PostgreSQL.
CHAOS_ENV = PIXELMILL_CHAOS_REALISTIC=1 PIXELMILL_CHAOS_TASKS=$${PIXELMILL_CHAOS_TASKS:-2000} \
	PIXELMILL_CHAOS_WORKER_KILLS=$${PIXELMILL_CHAOS_WORKER_KILLS:-10} \
	PIXELMILL_CHAOS_HORSE_KILLS=$${PIXELMILL_CHAOS_HORSE_KILLS:-10} PIXELMILL_CHAOS_WORKERS=$${PIXELMILL_CHAOS_WORKERS:-4}
chaos: $(STAMP)
	$(CHAOS_ENV) $(PY) -m pytest tests/jobs/test_chaos.py -s -q -p no:cacheprovider

chaos-postgres: $(STAMP)
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(CHAOS_ENV) \
	$(PY) -m pytest tests/jobs/test_chaos.py -s -q -p no:cacheprovider

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
