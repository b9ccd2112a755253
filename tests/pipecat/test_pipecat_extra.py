"""The pipecat extra is optional: `runner --help` never imports it, and a Pipecat bot without it
is one line naming the extra. These run whether or not Pipecat is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, run_cli


def test_help_does_not_import_pipecat() -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode == 0
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert not {name for name in imported if name.split(".")[0] in ("pipecat", "onnxruntime")}


def test_a_pipecat_bot_without_the_extra_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['pipecat'] = None\n")
    result = run_cli("serve", "bots/pipecat_echo.py", "--transport", "websocket", "--port", "0",
                     env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "pip install 'runner[pipecat]'" in lines[0] and "pipecat_echo.py" in lines[0]
