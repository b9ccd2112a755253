# Two commands for a new machine: `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The tests and smoke run the Pipecat examples too: the pipecat extra (~390 MB) on top of `all`.
TEST_STAMP := $(VENV)/.installed-test

# Transports that work offline, smoke-tested for every bot in bots/ by `make test` (the Pipecat
# bots, whose VAD wants speech, with a speech-like WAV, and only where the pipecat extra is in).
SMOKE_TRANSPORTS ?= websocket,webrtc,telephony,vonage
# A bot in Pipecat's runner style gets what Pipecat's create_transport builds: no Vonage.
PIPECAT_RUNNER_SMOKE_TRANSPORTS ?= websocket,webrtc,twilio,telnyx,plivo,exotel

.PHONY: dev test smoke lint system-deps clean bench bench-quick bench-realbot livekit-client

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[all,test,pipecat]'
	touch $(TEST_STAMP)

# The page's LiveKit mode loads livekit-client, the npm package pinned in web/package-lock.json,
# copied into the page's static files (gitignored): nothing third-party committed, no CDN.
LIVEKIT_CLIENT := runner/transports/webrtc/static/vendor/livekit-client.esm.mjs

livekit-client: $(LIVEKIT_CLIENT)

$(LIVEKIT_CLIENT): web/package.json web/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "note: npm not installed; the page's LiveKit mode stays off (install Node.js, then make livekit-client)"; \
	elif npm ci --prefix web --no-audit --no-fund --loglevel=error; then \
		mkdir -p $(@D) && cp web/node_modules/livekit-client/dist/livekit-client.esm.mjs $@; \
	else \
		echo "note: npm ci in web/ failed; the page's LiveKit mode stays off until make livekit-client succeeds"; \
	fi

dev: $(STAMP) livekit-client
	$(BIN)/runner dev bots/echo.py

# Chromium (for the browser-page test) and iproute2 (for the loopback-only test network).
system-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium iproute2 >/dev/null; \
		else \
			echo "note: chromium not installed and cannot install it here; the browser test will be skipped"; \
		fi; \
	fi

test: $(TEST_STAMP) system-deps livekit-client
	$(BIN)/ruff check .
	scripts/isolated $(BIN)/pytest -n 2 -q
	$(MAKE) --no-print-directory smoke
	$(MAKE) --no-print-directory bench-quick

smoke: $(STAMP)
	@mkdir -p smoke-results
	@for bot in bots/*.py; do \
		name=$$(basename $$bot .py); input=; \
		case $$name in pipecat_*) \
			if ! $(BIN)/python -c 'import pipecat' >/dev/null 2>&1; then \
				echo "smoke: skipped $$bot (needs the pipecat extra: pip install '.[pipecat]')"; continue; \
			fi; \
			input="--input tests/data/speech_like.wav";; \
		esac; \
		transports=$(SMOKE_TRANSPORTS); \
		case $$name in pipecat_unchanged) transports=$(PIPECAT_RUNNER_SMOKE_TRANSPORTS);; esac; \
		scripts/isolated $(BIN)/runner smoke $$bot --transport $$transports --duration 3 \
			--expect-audio --junit smoke-results/$$name.xml $$input || exit 1; \
	done

# Benchmarks (benchmarks/README.md): runner against the reference Pipecat runner, installed into
# benchmarks/.ref-venv (runner alone when that fails); WebRTC needs the loopback-only namespace.
bench: $(STAMP) system-deps
	benchmarks/reference/install.sh || echo "note: could not install the reference; measuring runner only"
	scripts/isolated $(BIN)/python -m benchmarks.run --readme

# The harness end to end at small N, runner only, in well under a minute: for CI.
bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.quick

# The real-bot benchmark (Silero VAD + Smart Turn v3, the same Pipecat bot on both servers): ~15 min.
bench-realbot: $(STAMP) system-deps
	benchmarks/reference/install.sh || echo "note: could not install the reference; measuring runner only"
	scripts/isolated $(BIN)/python -m benchmarks.realbot --readme

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
