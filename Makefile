# One command to install, one to serve, one to test. `make install` is idempotent.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps serve test lint bench

install: system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'

# Debian's Chromium drives the browser tests; iproute2 (ip, tc) and nftables build the network lab
# (tests/netlab). Installed only when missing (needs root or sudo).
system-deps:
	@export PATH="$$PATH:/usr/sbin:/sbin"; missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium chromium-driver"; \
	{ command -v ip && command -v tc; } >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v nft >/dev/null 2>&1 || missing="$$missing nftables"; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

serve:
	$(BIN)/multistream serve

test:
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check server handlers store compositor tests bench
	$(BIN)/ruff format --check server handlers store compositor tests bench
	$(BIN)/mypy server handlers store compositor

bench:
	$(BIN)/python -m pytest bench --benchmark-only
