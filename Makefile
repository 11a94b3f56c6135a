# Everything runs from a project-local virtualenv that `install` creates; `run` and `test`
# depend on it, so a machine with only python3 and make can run both.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Parallel test workers: the machine has 2 cores.
TEST_WORKERS ?= 2

.PHONY: install browser run test bench lint fmt clean service-install

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

# The sharder against its simulator: 8 shards on 4 workers, simulated users talking to the
# reference bot. Ctrl-C stops it.
run: install
	$(BIN)/python -m sharder start --simulate --shards 8 --workers 4 --traffic-rate 20

# The dashboard's browser test drives Debian's chromium through Playwright's driver (no browser
# download): installed with apt when missing, as root or through sudo.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing Debian's chromium for the dashboard's browser test"; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium >/dev/null \
		|| { $$sudo apt-get update -q >/dev/null \
			&& DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium >/dev/null; }; }

test: install browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) tests

bench: install
	$(BIN)/python scripts/bench_protocol.py
	$(BIN)/python scripts/bench_simulator.py
	$(BIN)/python scripts/bench_routing.py
	$(BIN)/python scripts/bench_recovery.py
	$(BIN)/python scripts/bench_ledger.py
	$(BIN)/python scripts/bench_state.py
	$(BIN)/python scripts/bench_compute.py
	$(BIN)/python scripts/bench_rest.py
	$(BIN)/python scripts/bench_scale.py
	$(BIN)/python scripts/bench_hostile.py
	$(BIN)/python scripts/bench_chaos.py
	$(BIN)/python scripts/bench_rolling.py
	$(BIN)/python scripts/bench_reshard.py
	$(BIN)/python scripts/bench_metrics.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# As root: the unit (pointing at this checkout), a system user, and /etc/sharder with a config
# and a token file to fill in. Existing files in /etc/sharder are kept.
UNIT := /etc/systemd/system/sharder.service
service-install: install
	id -u sharder >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin sharder
	install -d -m 0750 -g sharder /etc/sharder
	test -e /etc/sharder/sharder.toml || sed 's|^socket = .*|socket = "/run/sharder/sharder.sock"|' sharder.example.toml > /etc/sharder/sharder.toml
	test -e /etc/sharder/sharder.env || install -m 0600 /dev/null /etc/sharder/sharder.env
	grep -q '^DISCORD_TOKEN=' /etc/sharder/sharder.env || echo 'DISCORD_TOKEN=' >> /etc/sharder/sharder.env
	sed 's|@ROOT@|$(CURDIR)|g' scripts/sharder.service > $(UNIT)
	systemctl daemon-reload
	@echo "installed $(UNIT); put the token in /etc/sharder/sharder.env, then: systemctl enable --now sharder"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
