"""Settings from flags, the environment and a TOML file, in that order of precedence.

Every option of a command can come from three places; the first that has it wins:

1. the flag on the command line (``--checkpoint-every 30``);
2. the environment: ``RECSTREAM_`` + the flag's name in capitals, dashes as underscores
   (``RECSTREAM_CHECKPOINT_EVERY=30``, ``RECSTREAM_REDIS=rediss://writer:...@redis:6380/0``,
   ``RECSTREAM_NAMESPACE=reco``); a switch takes 1/0, true/false, yes/no, on/off;
3. the TOML file of ``--config PATH`` (or ``RECSTREAM_CONFIG``): top-level keys apply to every
   command that has the option, a ``[train]`` (``[publish]``, ...) table to that command only;
   keys are the flag names without dashes in front (``checkpoint-every = 30``, or with
   underscores). A table given to an option is read as its ``KEY=VALUE`` pairs
   (``map = {user = "userId"}``, or a ``[replay.map]`` table, is ``--map user=userId``).

Values from the environment and the file go through the same parsing and checks as flags, and
an error names where the bad value came from. Unknown keys in the file are errors; an unknown
``RECSTREAM_*`` variable is logged as a warning (a typo would otherwise go unnoticed). `demo`
takes flags only: it clears its namespace, so it must never pick up a deployment's.

    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> sub = p.add_subparsers(dest="command")
    >>> _ = sub.add_parser("train").add_argument("--batch-size", type=int, default=1024)
    >>> resolve(p, ["train"], {"RECSTREAM_BATCH_SIZE": "256"}).batch_size
    256
    >>> resolve(p, ["train", "--batch-size", "64"], {"RECSTREAM_BATCH_SIZE": "256"}).batch_size
    64
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "RECSTREAM_"
CONFIG_ENV = "RECSTREAM_CONFIG"
# Environment variables that are not options (test hooks, the config file's path).
NOT_OPTIONS = frozenset({CONFIG_ENV, "RECSTREAM_FAULT", "RECSTREAM_FAULT_RANK"})
FLAGS_ONLY = frozenset({"demo"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


class _UnsetList(list):  # type: ignore[type-arg]
    """The sentinel of an append option: argparse copies it and appends to the copy."""


_UNSET = _Unset()


def env_name(dest: str) -> str:
    """The environment variable of an option.

    >>> env_name("checkpoint_every")
    'RECSTREAM_CHECKPOINT_EVERY'
    """
    return PREFIX + dest.upper()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The optional, documented actions that carry a value (not --help, not hidden ones)."""
    return [
        a
        for a in parser._actions
        if a.option_strings
        and a.dest != "help"
        and a.help != argparse.SUPPRESS
        and not isinstance(a, argparse._SubParsersAction)
    ]


def _given(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """Dests set on the command line: parse again with every default replaced by a sentinel."""
    saved = [(a, a.default) for a in parser._actions]
    saved_defaults = dict(parser._defaults)
    try:
        for a in parser._actions:
            a.default = _UnsetList() if isinstance(a, argparse._AppendAction) else _UNSET
        parser._defaults.clear()
        ns, _ = parser.parse_known_args(argv)
    finally:
        for a, default in saved:
            a.default = default
        parser._defaults.update(saved_defaults)
    return {
        k
        for k, v in vars(ns).items()
        if v is not _UNSET and not (isinstance(v, _UnsetList) and not v)
    }


def _convert(action: argparse.Action, raw: Any, where: str) -> Any:
    """Parse `raw` (text from the environment, any TOML value) as `action` would parse a flag."""
    flag = action.option_strings[-1]
    switch = isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)
    if isinstance(raw, dict) and not switch:
        raw = ",".join(f"{key}={value}" for key, value in raw.items())
    if switch:
        if isinstance(raw, bool):
            value = raw
        elif str(raw).strip().lower() in _TRUE | _FALSE:
            value = str(raw).strip().lower() in _TRUE
        else:
            raise ConfigError(f"{where}: {flag} is a switch; write true or false, got {raw!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    if isinstance(action, argparse._AppendAction):
        items = raw if isinstance(raw, list) else [x for x in str(raw).split(",") if x.strip()]
        return [_one(action, x, where, flag) for x in items]
    if isinstance(raw, list):
        raw = ",".join(str(x) for x in raw)  # e.g. layers = [256, 128]
    return _one(action, raw, where, flag)


def _one(action: argparse.Action, raw: Any, where: str, flag: str) -> Any:
    if isinstance(raw, bool | dict):
        raise ConfigError(f"{where}: {flag} takes a value, got {raw!r}")
    text = str(raw).strip()
    try:
        value = action.type(text) if callable(action.type) else text
    except argparse.ArgumentTypeError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError):
        kind = getattr(action.type, "__name__", "value")
        raise ConfigError(f"{where}: {flag} takes a {kind}, got {raw!r}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: {flag} must be one of {choices}, got {raw!r}")
    return value


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config: {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {path} is not valid TOML: {e}") from None


def _file_values(
    data: Mapping[str, Any],
    path: Path,
    command: str,
    actions: dict[str, argparse.Action],
    every_dest: set[str],
    commands: set[str],
) -> dict[str, tuple[Any, str]]:
    """dest -> (raw value, where) for `command`; unknown keys are errors."""
    out: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        if isinstance(value, dict) and (key in commands or key.replace("-", "_") not in every_dest):
            if key not in commands:
                raise ConfigError(
                    f"{path}: [{key}] is not a command; tables are named after commands: "
                    f"{', '.join(sorted(commands))}"
                )
            if key != command:
                continue
            for sub, raw in value.items():
                dest = sub.replace("-", "_")
                if dest not in actions:
                    raise ConfigError(
                        f"{path}: [{key}] {sub} is not an option of `recstream {key}`"
                    )
                out[dest] = (raw, f"{path} [{key}] {sub}")
            continue
        dest = key.replace("-", "_")
        if dest not in every_dest:
            raise ConfigError(f"{path}: {key} is not an option of any recstream command")
        if dest in actions and dest not in out:
            out[dest] = (value, f"{path} {key}")
    return out


def resolve(
    parser: argparse.ArgumentParser,
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """Parse `argv`, then fill every option not given as a flag from `environ`, then the file.

    Options marked required with `require()` are checked after all three sources.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    args = parser.parse_args(argv)
    commands = _subparsers(parser)
    command = getattr(args, "command", None)
    sub = commands.get(command) if isinstance(command, str) else None
    if sub is None or not isinstance(command, str) or command in FLAGS_ONLY:
        return args
    actions = {a.dest: a for a in _options(sub)}
    every_dest = {a.dest for p in commands.values() for a in _options(p)}
    _warn_unknown_env(environ, every_dest)
    given = _given(sub, argv[argv.index(command) + 1 :] if command in argv else [])

    config = getattr(args, "config", None) if "config" in given else environ.get(CONFIG_ENV)
    from_file: dict[str, tuple[Any, str]] = {}
    if config is not None:
        from_file = _file_values(
            load_toml(Path(config)), Path(config), command, actions, every_dest, set(commands)
        )
    for dest, action in actions.items():
        if dest in given or dest == "config":
            continue
        name = env_name(dest)
        if name in environ:
            setattr(args, dest, _convert(action, environ[name], name))
        elif dest in from_file:
            raw, where = from_file[dest]
            setattr(args, dest, _convert(action, raw, where))
    for dest in getattr(sub, "required_options", ()):
        if getattr(args, dest, None) in (None, ""):
            flag = actions[dest].option_strings[-1]
            raise ConfigError(
                f"{flag} is required: pass {flag}, set {env_name(dest)}, or put "
                f"{flag.lstrip('-')} in the --config file's [{command}] table"
            )
    return args


def require(parser: argparse.ArgumentParser, *dests: str) -> None:
    """Mark options that must come from a flag, the environment or the file."""
    parser.required_options = (*getattr(parser, "required_options", ()), *dests)  # type: ignore[attr-defined]


def _warn_unknown_env(environ: Mapping[str, str], every_dest: set[str]) -> None:
    known = {env_name(d) for d in every_dest} | NOT_OPTIONS
    for name in sorted(environ):
        if name.startswith(PREFIX) and name not in known:
            log.warning("%s is set but is no recstream option (a typo?); ignored", name)


def redact_url(url: str | None) -> str | None:
    """A URL fit for logs: the password (and user) replaced.

    >>> redact_url("rediss://writer:s3cret@redis:6380/0")
    'rediss://***@redis:6380/0'
    """
    if not url or "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"
