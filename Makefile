# Two commands for a fresh machine: `make run` and `make test` (see README.md).
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test cluster lint clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $@

## run: one node on the embedded defaults (SQLite file chatd.sqlite3, no Redis), tcp:6000,
## and the web client on http://127.0.0.1:8080/
run: $(STAMP)
	@echo "chatd: chat clients on tcp:6000, the web client on http://127.0.0.1:8080/"
	$(BIN)/twistd --nodaemon --pidfile= chatd --web tcp:8080

## test: the whole trial suite, with the throwaway MariaDB/Redis/nginx it starts itself
test: $(STAMP)
	tests/run-suite

## cluster: private MariaDB + Redis, three nodes, nginx on 8000 (TCP) and 8080 (web), in the
## foreground (Ctrl-C stops); HA=1: Redis as a master, a replica and three sentinels
cluster: $(STAMP)
	$(BIN)/python -m chatd.devcluster $(if $(HA),--ha)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) _trial_temp* build *.egg-info
