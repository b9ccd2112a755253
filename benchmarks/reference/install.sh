#!/bin/sh
# Install the reference (the Pipecat development runner) into its own venv, benchmarks/.ref-venv.
# Never a dependency of runner. Exits non-zero when it cannot be installed (e.g. offline).
set -e
HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV="$HERE/.ref-venv"
PYTHON=${PYTHON:-python3}
SPEC=${PIPECAT_SPEC:-pipecat-ai[runner,webrtc,websocket]}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import pipecat.runner.run" 2>/dev/null; then
    exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "$SPEC"
"$VENV/bin/python" -c "import pipecat.runner.run" 
