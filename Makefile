# The two commands of the README: `make demo` (the whole mesh, end to end) and `make test`.
# Both set up the virtualenv from nothing on first use; nothing else needs installing by hand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-stack lint clean

$(BIN)/datamesh: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(BIN)/datamesh
	$(BIN)/datamesh demo

# Two workers (the machines have two cores); each test file stays on one worker, and each worker
# has its own embedded PostgreSQL.
test: $(BIN)/datamesh
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not stack"

# The deployed stack (tests/stack): api-server, scheduler, dag-processor, triggerer and two Celery
# workers as docker-compose.yml runs them, with Redis and PostgreSQL; about 10 minutes on 2 cores.
# Needs Debian's redis-server (.ci/run installs it when run as root).
test-stack: $(BIN)/datamesh
	$(BIN)/pytest -q -m stack tests/stack

lint: $(BIN)/datamesh
	$(BIN)/ruff check generator tests benchmarks cookiecutter-data-product/hooks

clean:
	-$(BIN)/datamesh db stop
	rm -rf .datamesh
