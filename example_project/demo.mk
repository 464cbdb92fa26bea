# make demo: the example site with two local relays, a Celery worker and the
# admin, on 127.0.0.1 only, until Ctrl-C. Merged into the top-level Makefile.
#   make demo DEMO_ARGS="--port 8001"   serve on another port

PYTHON ?= python3
VENV ?= .venv
DEMO_ARGS ?=

# A stamp, not the folder: an install that fails half-way is retried next time,
# and a changed pyproject.toml reinstalls.
$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e ".[test]"
	touch $@

.PHONY: demo
demo: $(VENV)/.installed
	cd example_project && $(abspath $(VENV))/bin/python demo.py $(DEMO_ARGS)
