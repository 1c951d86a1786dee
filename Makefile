# One command to install, one to serve, one to test. `make install` is idempotent.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps serve test lint bench

install: system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'

# Debian's Chromium drives the browser tests; Meetecho's simple-whip-client is the GStreamer WHIP
# client tried against the WHIP endpoint. Installed only when missing (needs root or sudo).
system-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v whip-client >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver \
			iproute2 simple-whip-client; \
	fi

serve:
	$(BIN)/multistream serve

test:
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check server handlers store compositor tests bench
	$(BIN)/ruff format --check server handlers store compositor tests bench
	$(BIN)/mypy server handlers store compositor

# The whole benchmark suite (about 3-4 minutes on the 2-vCPU dev machine): one pytest-benchmark JSON
# (compare runs with `pytest-benchmark compare A.json B.json`), then bench/RESULTS.md generated
# from it. One BLAS thread: numpy's OpenBLAS workers would steal the second core from the kernels.
BENCH_JSON ?= bench/results.json
bench:
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest bench --benchmark-only \
		--timeout=1800 --benchmark-max-time=0.15 --benchmark-min-rounds=5 \
		--benchmark-warmup=on --benchmark-warmup-iterations=3 --benchmark-disable-gc \
		--benchmark-json=$(BENCH_JSON)
	$(BIN)/python -m bench.report $(BENCH_JSON) --out bench/RESULTS.md
