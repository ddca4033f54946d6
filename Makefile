# Shenbao: the two commands a new machine needs are `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export SHENBAO_ENV ?= development
export FLASK_APP := wsgi.py

.PHONY: run test setup lint bench clean

$(BIN)/flask: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/flask

setup: $(BIN)/flask
	$(BIN)/flask i18n compile

# Set up and serve on embedded defaults: SQLite in ./instance, jobs in-process, demo data.
run: setup
	$(BIN)/flask setup --demo
	@echo "Shenbao is at http://127.0.0.1:5000  (demo logins are listed above)"
	$(BIN)/flask run --host 127.0.0.1 --port 5000

# Set up and run the tests. TEST_DATABASE_URL / TEST_REDIS_URL select PostgreSQL / Redis.
test: setup
	$(BIN)/ruff check .
	SHENBAO_ENV=testing $(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/flask definitions lint

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance .pytest_cache
