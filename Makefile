# Sentinel: make demo · make test · make bench · make lint
# Each target creates .venv when missing and installs what it needs; `make test` also installs
# the Debian packages the suite runs for real (PostgreSQL, Slurm, Prometheus, Alertmanager,
# Chromium, OpenIPMI's BMC simulator and ipmitool) when they are missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends
PYTEST_ARGS ?=

.PHONY: demo test bench lint screenshots system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The service's real dependencies for the tests; installed only when missing.
system-deps:
	@missing=""; \
	test -x /usr/lib/postgresql/15/bin/initdb || missing="$$missing postgresql-15"; \
	command -v runuser >/dev/null || missing="$$missing util-linux"; \
	for b in slurmctld slurmd scontrol sbatch; do command -v $$b >/dev/null || { missing="$$missing slurm-wlm"; break; }; done; \
	command -v munged >/dev/null || missing="$$missing munge"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v ipmi_sim >/dev/null || missing="$$missing openipmi"; \
	command -v ipmitool >/dev/null || missing="$$missing ipmitool"; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && $(APT) $$missing; \
	fi

# `make demo PORT=8700` when 8600 is taken.
PORT ?= 8600
demo: $(STAMP)
	$(VENV)/bin/sentinel demo --port $(PORT)

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy sentinel agents/sentinel_agent tests/harness
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Refresh the README's screenshots from the browser tests.
screenshots: $(STAMP) system-deps
	SENTINEL_SCREENSHOTS=docs/screenshots $(VENV)/bin/pytest tests/web/test_browser.py -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check sentinel agents
	$(VENV)/bin/mypy sentinel agents/sentinel_agent tests/harness

# Each script prints its figures and the command that produced them.
bench: $(STAMP) system-deps
	$(PY) benchmarks/ingest.py --hosts 2048 --seconds 30
	$(PY) benchmarks/scaleout.py --hosts 512 --seconds 15 --drain 15
	$(PY) benchmarks/detect_to_restart.py --trials 5
	$(PY) benchmarks/flight_recorder.py --ranks 1024
	$(PY) benchmarks/agent_overhead.py --seconds 30
	$(PY) benchmarks/soak.py --minutes 3 --quiet

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
