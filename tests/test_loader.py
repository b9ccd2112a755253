"""Bot references and every way they can be wrong."""

import os
import sys
from pathlib import Path

import pytest

from runner.loader import BotLoadError, load_bot, split_reference


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_split_reference() -> None:
    assert split_reference("bot.py") == ("bot.py", "bot")
    assert split_reference("dir/bot.py:main") == ("dir/bot.py", "main")
    assert split_reference("pkg.mod:run") == ("pkg.mod", "run")
    assert split_reference("pkg.mod") == ("pkg.mod", "bot")
    with pytest.raises(BotLoadError, match="not a Python function name"):
        split_reference("bot.py:not-a-name")


def test_loads_file_default_and_named_function(tmp_path: Path) -> None:
    path = write(tmp_path, "mybot.py", "async def bot(t):\n    pass\nasync def other(t):\n    pass\n")
    assert load_bot(str(path)).func.__name__ == "bot"
    loaded = load_bot(f"{path}:other")
    assert loaded.func.__name__ == "other" and loaded.path == path


def test_an_edit_that_keeps_size_and_mtime_second_loads_the_new_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as for a user: __pycache__ is written
    source = "VERSION = {}\nasync def bot(t):\n    pass\n"
    path = write(tmp_path, "edited.py", source.format(1))
    stamp = os.stat(path).st_mtime_ns
    assert load_bot(str(path)).func.__globals__["VERSION"] == 1
    path.write_text(source.format(2))  # a saved edit within the same second, same size
    os.utime(path, ns=(stamp, stamp))
    assert load_bot(str(path)).func.__globals__["VERSION"] == 2


def test_sibling_imports_work(tmp_path: Path) -> None:
    write(tmp_path, "helpers_for_bot.py", "VALUE = 41\n")
    path = write(tmp_path, "sib.py", "import helpers_for_bot\nasync def bot(t):\n"
                                    "    return helpers_for_bot.VALUE + 1\n")
    assert load_bot(str(path)).func is not None


def test_loads_module_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "botpkg"
    package.mkdir()
    write(package, "__init__.py", "")
    write(package, "voice.py", "async def talk(transport):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_bot("botpkg.voice:talk").func.__name__ == "talk"


def test_transport_options_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "opts.py", "transport_options = {'daily': {'bot_name': 'Ann'}}\n"
                                     "async def bot(t):\n    pass\n")
    assert load_bot(str(path)).options_for("daily") == {"bot_name": "Ann"}


@pytest.mark.parametrize(
    ("source", "reference_suffix", "message"),
    [
        (None, "", "no such file"),
        ("x = 1\n", "", "has no function 'bot': define `async def bot(transport):`"),
        ("def bot(t):\n    pass\n", "", "is a regular function"),
        ("async def bot():\n    pass\n", "", "must take exactly one argument"),
        ("async def bot(a, b):\n    pass\n", "", "must take exactly one argument"),
        ("bot = 3\n", "", "is not a function"),
        ("async def bot(t):\n    pass\n", ":missing", "has no function 'missing'"),
        ("transport_options = {'skype': {}}\nasync def bot(t):\n    pass\n", "",
         "unknown transport 'skype'"),
        ("transport_options = 3\nasync def bot(t):\n    pass\n", "", "must be a dict"),
    ],
)
def test_load_errors(tmp_path: Path, source: str | None, reference_suffix: str, message: str) -> None:
    path = tmp_path / "broken.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(BotLoadError) as error:
        load_bot(f"{path}{reference_suffix}")
    assert message in str(error.value)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "syntax.py", "async def bot(t):\n    pass\n\ndef broken(:\n")
    with pytest.raises(BotLoadError) as error:
        load_bot(str(path))
    assert f"{path}:4: syntax error" in str(error.value)


def test_error_while_importing_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "raises.py", "import os\n\nraise RuntimeError('no model')\n")
    with pytest.raises(BotLoadError) as error:
        load_bot(str(path))
    assert f"{path}:3: importing" in str(error.value) and "RuntimeError: no model" in str(error.value)


def test_unknown_module_is_a_clear_error() -> None:
    with pytest.raises(BotLoadError, match="no such file or module"):
        load_bot("surely_not_a_module_xyz:bot")
