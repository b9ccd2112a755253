"""The names a bot imports from `runner`, and `import runner` staying light."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import runner

#: What a bot may import from `runner` (issue 19), and the module each is defined in.
PUBLIC = {
    "runner.audio": ("AudioFrame", "tone", "read_wav", "write_wav"),
    "runner.transports.base": ("Transport", "ClientConnected", "ClientLeft", "Dtmf",
                               "MarkReached", "AppMessage"),
    "runner.transports.telephony.detect": ("parse_telephony_websocket",),
}
NAMES = {name: module for module, names in PUBLIC.items() for name in names}

HEAVY = ("numpy", "soxr", "fastapi", "starlette", "uvicorn", "aiortc", "daily")


@pytest.mark.parametrize(("name", "module"), sorted(NAMES.items()))
def test_name_imports_from_runner_as_the_object_its_module_defines(name: str, module: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from runner import {name}", namespace)
    assert namespace[name] is getattr(importlib.import_module(module), name)
    assert getattr(runner, name) is namespace[name]


def test_all_lists_every_public_name() -> None:
    assert set(runner.__all__) == {*NAMES, "__version__"}
    assert len(runner.__all__) == len(set(runner.__all__))


def test_star_import_gives_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from runner import *", namespace)
    assert {*NAMES, "__version__"} <= namespace.keys()


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        runner.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from runner import NoSuchThing", {})


def test_import_runner_stays_light() -> None:
    """`import runner` (what `runner --help` starts with) imports none of the heavy dependencies."""
    code = (
        "import json, sys\n"
        "import runner\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert json.loads(result.stdout) == []


def test_first_use_of_a_name_imports_its_module() -> None:
    """The lazy import really happens on use (and only then)."""
    code = (
        "import json, sys\n"
        "import runner\n"
        "before = 'runner.transports.base' in sys.modules\n"
        "runner.Dtmf\n"
        "print(json.dumps([before, 'runner.transports.base' in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert json.loads(result.stdout) == [False, True]
