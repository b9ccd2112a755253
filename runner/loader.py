"""Turn "bot.py", "bot.py:main" or "pkg.mod:func" into the bot coroutine function.

Every way this can fail is something the user wrote, so each gets one line that names the file
and what to write instead, never a traceback.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from runner.errors import UserError

DEFAULT_FUNCTION = "bot"

BotFunction = Callable[[Any], Awaitable[Any]]


class BotLoadError(UserError):
    """The bot reference cannot be turned into a bot; the message says why and how to fix it."""


@dataclass(frozen=True)
class LoadedBot:
    """The bot coroutine function plus what its file says about building transports."""

    func: BotFunction
    reference: str
    path: Path | None = None
    transport_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The file's optional `prewarm()` (sync or async): run once per process before its sessions,
    #: e.g. to load a model, so no session waits for it.
    prewarm: Callable[[], Any] | None = None
    #: A bot written for Pipecat's development runner (`async def bot(runner_args:
    #: RunnerArguments)`): its sessions hand it Pipecat's RunnerArguments (runner.handover), and
    #: `func` already takes the session's transport and passes them on.
    pipecat: bool = False

    def options_for(self, kind: str) -> Mapping[str, Any]:
        return self.transport_options.get(kind, {})


def split_reference(reference: str) -> tuple[str, str]:
    """'a/b.py:go' -> ('a/b.py', 'go'); 'pkg.mod' -> ('pkg.mod', 'bot')."""
    target, sep, name = reference.rpartition(":")
    if not sep or "/" in name or "\\" in name:
        return reference, DEFAULT_FUNCTION
    if not name.isidentifier():
        raise BotLoadError(f"{reference}: {name!r} is not a Python function name")
    return target, name


def load_bot(reference: str) -> LoadedBot:
    target, name = split_reference(reference)
    looks_like_file = target.endswith(".py") or "/" in target or Path(target).exists()
    if looks_like_file:
        path = Path(target).resolve()
        module = _import_file(path, target)
        where = target
    else:
        path = None
        module = _import_module(target)
        where = target
    func = getattr(module, name, None)
    if func is None:
        raise BotLoadError(
            f"{where} has no function {name!r}: define `async def {name}(transport):`"
        )
    _check_signature(func, where, name)
    options = _transport_options(module, where)
    prewarm = getattr(module, "prewarm", None)
    if prewarm is not None and not callable(prewarm):
        raise BotLoadError(f"{where}: prewarm must be a function: define `def prewarm():`")
    pipecat = takes_runner_args(func)
    if pipecat:
        func = _passing_runner_args(func)
    return LoadedBot(func=func, reference=reference, path=path, transport_options=options,
                     prewarm=prewarm, pipecat=pipecat)


def takes_runner_args(func: Any) -> bool:
    """Whether `func` is a Pipecat development-runner bot: its parameter is named `runner_args`
    or annotated with a `...RunnerArguments` type (a string too, under `from __future__ import
    annotations`), so nothing of Pipecat is imported to tell."""
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    if not parameters:
        return False
    first = parameters[0]
    annotation = first.annotation
    names = ([annotation] if isinstance(annotation, str)
             else [cls.__name__ for cls in getattr(annotation, "__mro__", ())])
    return first.name == "runner_args" or any(
        name.rpartition(".")[2].endswith("RunnerArguments") for name in names)


def _passing_runner_args(func: BotFunction) -> BotFunction:
    """Sessions call a bot with their transport; a Pipecat bot gets the RunnerArguments that
    runner.handover built for it instead (only routes that hand a session over build them)."""

    @functools.wraps(func)
    async def bot(transport: Any) -> Any:
        runner_args = getattr(transport, "runner_args", None)
        if runner_args is None:
            raise BotLoadError(f"{func.__name__} takes Pipecat's runner_args, which the "
                               f"{transport.kind} transport cannot give")
        return await func(runner_args)

    return bot


def _import_file(path: Path, shown: str) -> ModuleType:
    if not path.is_file():
        raise BotLoadError(f"{shown}: no such file")
    module_name = f"runner_bot_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BotLoadError(f"{shown}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    # The bot's own folder comes first so `import helpers` next to bot.py works as with `python bot.py`.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        # Compiled from the source every time, not through __pycache__: a cached file is trusted
        # when the source's size and mtime in whole seconds match, so an edit that keeps the
        # size (a digit changed) saved within the second would reload the old code.
        exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
    except SyntaxError as error:
        sys.modules.pop(module_name, None)
        raise BotLoadError(
            f"{error.filename or shown}:{error.lineno}: syntax error: {error.msg}"
        ) from None
    except Exception as error:
        sys.modules.pop(module_name, None)
        raise BotLoadError(_describe_import_error(error, shown)) from None
    return module


def _import_module(name: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise BotLoadError(f"{name}: not a file or a module name (write bot.py or package.module)")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise BotLoadError(f"{name}: no such file or module") from None
        raise BotLoadError(_describe_import_error(error, name)) from None
    except SyntaxError as error:
        raise BotLoadError(f"{error.filename}:{error.lineno}: syntax error: {error.msg}") from None
    except Exception as error:
        raise BotLoadError(_describe_import_error(error, name)) from None


def _describe_import_error(error: BaseException, shown: str) -> str:
    """Name the innermost line of user code that raised while the bot module was imported."""
    frames = traceback.extract_tb(error.__traceback__)
    user = [frame for frame in frames if "importlib" not in frame.filename]
    place = f"{user[-1].filename}:{user[-1].lineno}" if user else shown
    return f"{place}: importing {shown} raised {type(error).__name__}: {error}"


def _check_signature(func: Any, where: str, name: str) -> None:
    if not callable(func):
        raise BotLoadError(f"{where}: {name!r} is not a function: define `async def {name}(transport):`")
    if not inspect.iscoroutinefunction(func):
        raise BotLoadError(
            f"{where}: {name} is a regular function; the bot must be `async def {name}(transport):`"
        )
    try:
        inspect.signature(func).bind(object())
    except TypeError:
        raise BotLoadError(
            f"{where}: {name}{inspect.signature(func)} must take exactly one argument, the "
            f"transport: `async def {name}(transport):`"
        ) from None
    except ValueError:
        return


def _transport_options(module: ModuleType, where: str) -> dict[str, dict[str, Any]]:
    from runner.transports import REGISTRY

    raw = getattr(module, "transport_options", None)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise BotLoadError(f"{where}: transport_options must be a dict of transport name -> options")
    options: dict[str, dict[str, Any]] = {}
    for kind, value in raw.items():
        if kind not in REGISTRY:
            raise BotLoadError(
                f"{where}: transport_options has unknown transport {kind!r} "
                f"(known: {', '.join(REGISTRY)})"
            )
        if not isinstance(value, Mapping):
            raise BotLoadError(f"{where}: transport_options[{kind!r}] must be a dict")
        options[kind] = dict(value)
    return options
