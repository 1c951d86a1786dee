# One command to install, one to serve, one to test. `make install` is idempotent.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A MongoDB-compatible wire server for the tests and `make serve-mongo`, in a venv of its own (it
# pulls shapely, s2sphere and dateutil, which the project does not need). Not MongoDB: see DEPLOYMENT.md.
MONGO_VENV ?= .venv-mongo
SECANTUSDB ?= secantusdb==0.7.0b3
MONGO_PORT ?= 27117

.PHONY: install system-deps mongo-deps serve serve-mongo test lint bench

install: system-deps mongo-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'

mongo-deps:
	$(PY) -m venv $(MONGO_VENV)
	$(MONGO_VENV)/bin/pip install -q '$(SECANTUSDB)'

# Debian's Chromium drives the browser tests; iproute2 (ip, tc) and nftables build the network lab
# (tests/netlab); Meetecho's simple-whip-client is the GStreamer WHIP client tried against the WHIP
# endpoint. Installed only when missing (needs root or sudo).
system-deps:
	@export PATH="$$PATH:/usr/sbin:/sbin"; missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium chromium-driver"; \
	{ command -v ip && command -v tc; } >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v nft >/dev/null 2>&1 || missing="$$missing nftables"; \
	command -v whip-client >/dev/null 2>&1 || missing="$$missing simple-whip-client"; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

serve:
	$(BIN)/multistream serve

# Try the MongoDB backend without a MongoDB: a throwaway in-memory wire server on MONGO_PORT, stopped
# after the server exits. Ctrl-C reaches the server only (the database runs in its own session, so it
# outlives the server's drain, which still writes); the server waits for it (driver server selection).
serve-mongo:
	@setsid $(MONGO_VENV)/bin/secantusd-py --host 127.0.0.1 --port $(MONGO_PORT) \
		--storage-path :memory: --cache-size 256M --log-level WARNING & db=$$!; \
	trap 'kill $$db 2>/dev/null; wait $$db 2>/dev/null' EXIT; trap true INT; \
	echo "secantusdb (throwaway, in memory) pid $$db on 127.0.0.1:$(MONGO_PORT)"; \
	$(BIN)/multistream serve --store 'mongodb://127.0.0.1:$(MONGO_PORT)/multistream?replicaSet=secantus'

test:
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check multistream server handlers store compositor tests bench
	$(BIN)/ruff format --check multistream server handlers store compositor tests bench
	$(BIN)/mypy multistream server handlers store compositor

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
