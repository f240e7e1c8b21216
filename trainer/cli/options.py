"""From option declarations (`trainer.options`) to argparse arguments, and from parsed
arguments to settings objects: the only place that calls ``add_argument`` for an option.

    >>> import argparse
    >>> from trainer.core.settings import ModelSettings
    >>> p = argparse.ArgumentParser()
    >>> add_options(p, [o for _, o in options_of(ModelSettings)])
    >>> build(ModelSettings, p.parse_args(["--dim", "8", "--half-life", "1d"])).half_life_ms
    86400000.0
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from trainer.cli.resolve import require
from trainer.options import Option, options_of

T = TypeVar("T")

__all__ = ["add_options", "build", "options_of"]


def add_options(
    parser: argparse.ArgumentParser,
    options: Iterable[Option],
    sections: Mapping[str, str] | None = None,
) -> None:
    """Add each option as an argument, in its `group` section (described by `sections`).

    An option already added to `parser` is skipped: commands share declarations."""
    declared: dict[str, Option] = parser.__dict__.setdefault("declared_options", {})
    for o in options:
        if o.flag in declared:
            if declared[o.flag] is not o:
                raise ValueError(f"{o.flag} is declared twice for `{parser.prog}`")
            continue
        declared[o.flag] = o
        section = _section(parser, o.group, (sections or {}).get(o.group or ""))
        flags = [o.short, o.flag] if o.short else [o.flag]
        help = argparse.SUPPRESS if o.hidden else _help(o)
        if o.switch:
            section.add_argument(*flags, dest=o.dest, action="store_true", help=help)
            continue
        typed = _typed(o) if o.parse or o.check or o.convert else str
        section.add_argument(
            *flags,
            dest=o.dest,
            action="append" if o.many else "store",
            type=typed,
            default=None if o.required else list(o.default) if o.many else o.default,
            choices=o.choices,
            metavar=o.metavar,
            help=help,
        )
        if o.required:
            require(parser, o.dest)


def build(settings: type[T], args: argparse.Namespace, **given: Any) -> T:
    """A `settings` object: each field with an option from `args`, `given` ones as given, the
    others at their defaults."""
    values = {
        name: option.setting(getattr(args, option.dest))
        for name, option in options_of(settings)
        if name not in given
    }
    fields = {f.name for f in dataclasses.fields(settings)}  # type: ignore[arg-type]
    unknown = set(given) - fields
    if unknown:
        raise TypeError(f"{settings.__name__} has no field {', '.join(sorted(unknown))}")
    return settings(**values, **given)


def _typed(o: Option) -> Any:
    def typed(text: str) -> Any:
        try:
            return o.read(text)
        except ValueError as e:  # argparse and `resolve` show an ArgumentTypeError's text
            raise argparse.ArgumentTypeError(str(e)) from None

    typed.__name__ = o.dest
    return typed


def _help(o: Option) -> str:
    text = o.help.replace("%", "%%")
    if o.required or o.switch or o.many or o.default in (None, ""):
        return text
    return f"{text} (default: %(default)s)"


def _section(
    parser: argparse.ArgumentParser, title: str | None, description: str | None
) -> argparse.ArgumentParser | argparse._ArgumentGroup:
    if title is None:
        return parser
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title, description)
