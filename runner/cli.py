"""The `runner` command: parses flags into a Config and hands over; nothing else happens here.

Each setting in config.SETTINGS with a flag becomes an option of `dev` and `serve`, with its
environment variable and default in the help, so the flags and the settings cannot drift apart.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from runner import __version__
from runner.config import SETTINGS, Config, Mode, Setting, load_config
from runner.errors import UserError

USER_ERROR = 2

app = typer.Typer(
    name="runner",
    help="Run a real-time voice/video bot and connect it to people over the right transport.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

BOT_HELP = "The bot: path/to/bot.py, path/to/bot.py:func or package.module:func (default func: bot)."
ENV_FILE_HELP = "Read settings from this .env file [default: .env in the current directory]."
COMMON = ("transport", "host", "port", "public_url", "log_level", "log_format", "max_sessions",
          "max_duration", "grace_period", "ice_servers", "connect_timeout", "verify_signatures",
          "detect_timeout", "daily_room_url", "livekit_room", "allowed_origins", "idle_timeout",
          "block_warning", "isolation", "prewarm", "worker_timeout", "worker_memory_limit",
          "record")
SERVE_ONLY = ("allow_unauthenticated", "drain_timeout")
ALIASES = {"public_url": ("--proxy",), "transport": ("-t",)}


def _option_help(setting: Setting, mode: Mode) -> str:
    return f"{setting.help} [env: {setting.env}; default: {setting.describe_default(mode)}]"


def _parameters(names: tuple[str, ...], mode: Mode) -> list[inspect.Parameter]:
    """Typer parameters for the settings named, built from the settings table, with the
    defaults of `mode`."""
    params = [
        inspect.Parameter("bot", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
            str, typer.Argument(help=BOT_HELP, metavar="BOT", show_default=False)]),
        inspect.Parameter("env_file", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[Optional[str], typer.Option(  # noqa: UP045
                              "--env-file", help=ENV_FILE_HELP, metavar="FILE",
                              show_default=False)]),
    ]
    for setting in SETTINGS:
        if setting.name not in names or setting.flag is None:
            continue
        if setting.switch:
            flag = f"{setting.flag}/--no-{setting.flag[2:]}"
            option = typer.Option(flag, help=_option_help(setting, mode), show_default=False)
            annotation: Any = Annotated[Optional[bool], option]  # noqa: UP045
        else:
            option = typer.Option(setting.flag, *ALIASES.get(setting.name, ()),
                                  help=_option_help(setting, mode), metavar=setting.metavar,
                                  show_default=False)
            annotation = Annotated[Optional[str], option]  # noqa: UP045
        params.append(inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=None, annotation=annotation))
    return params


def _server_command(mode: Mode, names: tuple[str, ...], doc: str) -> Callable[..., None]:
    def command(bot: str, env_file: str | None = None, **flags: Any) -> None:
        from runner.serve import run

        run(_load(mode, flags, env_file), bot)

    command.__signature__ = inspect.Signature(_parameters(names, mode))  # type: ignore[attr-defined]
    command.__doc__ = doc
    command.__name__ = mode
    return command


def _load(mode: Mode, flags: dict[str, Any], env_file: str | None) -> Config:
    """The Config, after telling the user what looked wrong in how it was given."""
    config = load_config(mode, flags, env_file=env_file)
    for warning in config.warnings:
        print(f"runner: warning: {warning}", file=sys.stderr)
    return config


DEV_HELP = "Develop a bot: WebRTC to the built-in page at http://127.0.0.1:7860/, reload on change."
SERVE_HELP = "Serve a bot in staging or production (Daily, telephony, WebSocket, WebRTC)."
SMOKE_HELP = ("Smoke-test a bot over transports with synthetic clients, no phone or browser "
              "needed.")
TRANSPORTS_HELP = ("List the transports: routes, whether their packages are installed, what is "
                   "configured.")

# short_help: the whole summary in `runner --help`, not a first sentence cut to the width.
app.command(name="dev", short_help=DEV_HELP)(_server_command("dev", (*COMMON, "reload"), DEV_HELP))
app.command(name="serve", short_help=SERVE_HELP, epilog="Credentials are read from the "
            "environment or .env: " + ", ".join(s.env for s in SETTINGS if s.flag is None)
            + ".")(_server_command("serve", (*COMMON, *SERVE_ONLY), SERVE_HELP))


SMOKE_SETTINGS = ("transport", "log_level", "grace_period", "max_duration", "detect_timeout",
                  "connect_timeout", "ice_servers", "verify_signatures", "record")


def _smoke(bot: str, env_file: str | None = None, input: str | None = None,
           duration: float = 10.0, expect_audio: bool = False, expect_message: bool = False,
           json_path: str | None = None, junit: str | None = None,
           parallel: bool = False, **flags: Any) -> None:
    from runner.smoke.command import smoke

    code = smoke(_load("smoke", flags, env_file), bot, input_path=input, duration=duration,
                 expect_audio=expect_audio, expect_message=expect_message, json_path=json_path,
                 junit_path=junit, parallel=parallel)
    raise typer.Exit(code)


def _smoke_parameters() -> list[inspect.Parameter]:
    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=annotation)

    path = Optional[str]  # noqa: UP045
    return [
        *_parameters((), "smoke"),
        option("input", Annotated[path, typer.Option(
            "--input", metavar="WAV", help="Play this WAV (any rate) instead of the built-in "
            "test signal.", show_default=False)], None),
        option("duration", Annotated[float, typer.Option(
            "--duration", metavar="SECONDS", help="How long each synthetic client talks.")], 10.0),
        option("expect_audio", Annotated[bool, typer.Option(
            "--expect-audio", help="Fail unless the bot sends audio back.")], False),
        option("expect_message", Annotated[bool, typer.Option(
            "--expect-message", help="Fail unless the bot sends an app message.")], False),
        option("json_path", Annotated[path, typer.Option(
            "--json", metavar="FILE", help="Write the results as JSON.", show_default=False)], None),
        option("junit", Annotated[path, typer.Option(
            "--junit", metavar="FILE", help="Write JUnit XML (one testcase per transport x check).",
            show_default=False)], None),
        option("parallel", Annotated[bool, typer.Option(
            "--parallel", help="Test the transports at the same time.")], False),
        *_parameters(SMOKE_SETTINGS, "smoke")[2:],
    ]


_smoke.__signature__ = inspect.Signature(_smoke_parameters())  # type: ignore[attr-defined]
_smoke.__doc__ = (f"{SMOKE_HELP}\n\nExit status: 0 when every check that ran passed, 1 when one "
                  "failed, 2 on usage errors, 3 when nothing was tested (every check skipped).")
app.command(name="smoke", short_help=SMOKE_HELP)(_smoke)


REPLAY_HELP = ("Replay a recorded session's caller side into a bot and compare the turns with "
               "the recording.")
REPLAY_SETTINGS = ("log_level", "grace_period", "max_duration", "detect_timeout",
                   "connect_timeout", "verify_signatures", "record")


def _replay(recording: str, bot: str, env_file: str | None = None, max_slowdown: float = 1.5,
            junit: str | None = None, **flags: Any) -> None:
    from runner.replay.command import replay

    code = replay(_load("smoke", flags, env_file), recording, bot, max_slowdown=max_slowdown,
                  junit_path=junit)
    raise typer.Exit(code)


def _replay_parameters() -> list[inspect.Parameter]:
    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=annotation)

    recording = inspect.Parameter("recording", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                  annotation=Annotated[str, typer.Argument(
                                      help="A session folder written by --record (or a --record "
                                      "folder holding one session).", metavar="DIR",
                                      show_default=False)])
    return [
        recording,
        *_parameters((), "smoke"),
        option("max_slowdown", Annotated[float, typer.Option(
            "--max-slowdown", metavar="TIMES", help="Fail when a turn's latency grew by more "
            "than this factor (and by more than 0.1 s).")], 1.5),
        option("junit", Annotated[Optional[str], typer.Option(  # noqa: UP045
            "--junit", metavar="FILE", help="Write JUnit XML (one testcase per turn).",
            show_default=False)], None),
        *_parameters(REPLAY_SETTINGS, "smoke")[2:],
    ]


_replay.__signature__ = inspect.Signature(_replay_parameters())  # type: ignore[attr-defined]
_replay.__doc__ = (f"{REPLAY_HELP}\n\nPlays the caller's audio, DTMF and app messages over the "
                   "recorded transport (websocket, twilio, telnyx, plivo, exotel, vonage) and "
                   "records the bot's new side (--record keeps it). Exit status: 0 no turn got "
                   "slower or lost its reply, 1 one did, 2 on usage errors.")
app.command(name="replay", short_help=REPLAY_HELP)(_replay)


CONSOLE_HELP = ("Talk to a bot from the terminal: microphone and speaker (or WAV files), a level "
                "meter and the session's events.")
CONSOLE_SETTINGS = ("log_level", "log_format", "max_duration", "grace_period", "idle_timeout",
                    "record", "reload")


def _console(bot: str | None = None, env_file: str | None = None, input: str | None = None,
             output: str | None = None, device: str | None = None, list_devices: bool = False,
             **flags: Any) -> None:
    from runner.console import ConsoleOptions, console

    if bot is None and not list_devices:
        raise UserError("Missing argument 'BOT'.")
    raise typer.Exit(console(_load("console", flags, env_file), bot or "",
                             ConsoleOptions(input, output, device), list_devices=list_devices))


def _console_parameters() -> list[inspect.Parameter]:
    def option(name: str, default: Any, *decls: str, **kwargs: Any) -> inspect.Parameter:
        kind = Optional[str] if default is None else bool  # noqa: UP045
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[kind, typer.Option(*decls, **kwargs)])

    bot, env_file, *settings = _parameters(CONSOLE_SETTINGS, "console")
    bot = bot.replace(default=None, annotation=Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help=BOT_HELP, metavar="BOT", show_default=False)])
    return [
        bot, env_file,
        option("input", None, "--input", metavar="WAV", show_default=False,
               help="Talk with this WAV file instead of the microphone (no audio device needed)."),
        option("output", None, "--output", metavar="WAV", show_default=False,
               help="Write what the bot says to this WAV file, on the session's timeline, instead "
               "of playing it."),
        option("device", None, "--device", metavar="DEVICE", show_default=False,
               help="Audio device: its number or part of its name (see --list-devices)."),
        option("list_devices", False, "--list-devices", help="List the audio devices and exit."),
        *settings,
    ]


_console.__signature__ = inspect.Signature(_console_parameters())  # type: ignore[attr-defined]
_console.__doc__ = (f"{CONSOLE_HELP}\n\nThe bot runs on the plain WebSocket transport in this "
                    "process; saving a .py file next to it starts a new session with the new code. "
                    "Exit status: 0 done, 2 usage errors (no audio device: use --input/--output).")
app.command(name="console", short_help=CONSOLE_HELP)(_console)


@app.command(name="transports", short_help=TRANSPORTS_HELP, help=TRANSPORTS_HELP)
def transports_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    env_file: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--env-file", help=ENV_FILE_HELP, metavar="FILE", show_default=False)] = None,
) -> None:
    from runner.transports import REGISTRY

    config = _load("serve", {}, env_file)
    rows = []
    for spec in REGISTRY.values():
        missing_envs = spec.missing_credentials(config)
        rows.append({
            "transport": spec.name,
            "summary": spec.summary,
            "routes": list(spec.routes),
            "available": spec.available(),
            "install": None if spec.available() else spec.install_hint(),
            "configured": spec.configured(config),
            "set": [env for env in spec.credential_envs() if env not in missing_envs],
            "missing": missing_envs,
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    header = ("transport", "available", "configured", "routes")
    table = [header] + [
        (
            row["transport"],
            "yes" if row["available"] else f"no: {row['install']}",
            "n/a" if not row["set"] and not row["missing"]
            else "yes" if row["configured"] else f"no: set {', '.join(row['missing'])}",
            " ".join(row["routes"]),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    for line in table:
        typer.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:3])) + "  "
                   + line[3])


def _version(value: bool) -> None:
    if value:
        typer.echo(f"runner {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option(  # noqa: UP045
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Run a real-time voice/video bot and connect it to people over the right transport."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit status 2, never a traceback."""
    command = typer.main.get_command(app)
    argv = sys.argv[1:] if argv is None else argv
    try:  # no arguments at all: the help, as a help (not as an error, line by line)
        code = command.main(args=argv or ["--help"], prog_name="runner", standalone_mode=False)
    except typer.TyperException as error:  # a usage error (typer's public base of them)
        _fail(error.format_message())
    except typer.Abort:
        sys.exit(130)
    except UserError as error:
        _fail(str(error))
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    for line in message.strip().splitlines() or ["error"]:
        print(f"runner: error: {line}", file=sys.stderr)
    sys.exit(USER_ERROR)
