# make test  - create .venv, install the app with its test extras, run ruff and the whole suite
# make demo  - run the example site with two local relays and a Celery worker
# make bench - the benchmark (see bench/README.md)
# make mutate - mutation testing of the core modules (see mutation/run.py)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: test lint demo bench mutate clean

# A stamp, not the folder: an install that fails half-way is retried next time,
# and a changed pyproject.toml reinstalls.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e ".[test]" $(EXTRA_PACKAGES)
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Branch coverage of the package is measured on every run (pyproject.toml,
# [tool.coverage]) and the run fails below the floor. A partial run measures
# less:  make test PYTEST_ARGS="-m 'not slow'" COVERAGE_FLOOR=0
COVERAGE_FLOOR ?= 92
test: lint
	$(PY) -m pytest --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR) $(PYTEST_ARGS)

# The example site with two local relays (one refusing every connection), a
# Celery worker and the admin, on 127.0.0.1 only, until Ctrl-C. Each run starts
# from a clean demo state and checks that the demo told the story it promises.
#   make demo DEMO_ARGS="--port 8001"
#   make demo DEMO_ARGS="--no-serve"   # report and exit, non-zero if the story differed
DEMO_ARGS ?=
demo: $(VENV)/.installed
	cd example_project && $(abspath $(VENV))/bin/python demo.py $(DEMO_ARGS)

# The benchmark (bench/README.md): smtplib baseline, the engine, a Celery worker,
# and django-post_office / django-mailer when installed, on SQLite and PostgreSQL side by
# side; the SMTP submission listener against a bare aiosmtpd server (smtp-source); with PostgreSQL, the scale tests (several workers; the admin over 10,000 and
# 1,000,000 messages).
#   make bench BENCH_ARGS="--postgres --memory --large 100 --scale-workers 4"
BENCH_ARGS ?= --sqlite --postgres --memory --large 100 --scale-workers 4 --admin-scale --destinations --submission --dkim 2000 --json bench/results/latest.json
bench: $(VENV)/.installed
	@command -v smtp-sink >/dev/null || test -x /usr/sbin/smtp-sink || \
		{ echo "make bench needs Postfix's smtp-sink: apt-get install postfix (the daemon is not used)"; exit 1; }
	$(PY) -m pip install $(PIP_FLAGS) django-post-office django-mailer
	$(PY) bench/run.py $(BENCH_ARGS)

# Mutation testing (mutmut) of the core modules, each against the tests that
# exercise it, niced; mutation/report.md lists the survivors, and
# mutation/equivalent.md those that no test can kill, with the reason.
# Fails when the score is under 90%.
#   make mutate MUTATE_ARGS="backends envelope"   # some modules (names in mutation/run.py)
MUTATE_ARGS ?=
mutate: $(VENV)/.installed
	$(PY) -m pip install $(PIP_FLAGS) "mutmut>=3.8,<4"
	$(PY) mutation/run.py $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .ruff_cache .mutation .coverage tests/test*.sqlite3
