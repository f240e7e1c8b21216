"""Options several commands share: the common ones, Redis (URL and TLS), Kafka security, and
how a log file is read (`replay` and `train --source file://`).

Each is declared once (`trainer.options.Option`); `kafka_options` and `redis_options` turn the
parsed flags into client keyword arguments, `log_format` into a `stream.formats.LogFormat`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

from stream.errors import MappingError
from stream.formats import FORMATS, FieldMap, LogFormat
from trainer.daemon.settings import NAMESPACE
from trainer.options import Option, key_value, path

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"

LOG_LEVEL = Option(
    "--log-level", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")
)
CONFIG = Option(
    "--config",
    None,
    "settings file; flags win over RECSTREAM_* variables, which win over the file",
    path,
    metavar="TOML",
)
COMMON = (NAMESPACE, LOG_LEVEL, CONFIG)  # every command has them

REDIS = Option("--redis", DEFAULT_REDIS, "Redis URL", metavar="URL")

REDIS_SECURITY, KAFKA_SECURITY = "redis security", "kafka security"
LOG_FORMAT = "log format"
SECTIONS = {
    LOG_FORMAT: "How the log is read: JSONL, CSV, TSV or Parquet, and which column is which field "
    "of an event. Each record is then validated like a Kafka message; a bad one goes to the "
    "dead-letter file with its line or row number and the reason.",
    REDIS_SECURITY: "Put an ACL user and password in the URL (redis://USER:PASSWORD@HOST:PORT/DB; "
    "better in RECSTREAM_REDIS than on the command line); rediss:// connects with TLS.",
    KAFKA_SECURITY: "Passed to every Kafka client as kafka-python options (keep the password in "
    "RECSTREAM_KAFKA_SASL_PASSWORD, not on the command line).",
}


def _redis_tls(flag: str, help: str) -> Option:
    return Option(flag, None, help, metavar="PEM", group=REDIS_SECURITY)


def _kafka(flag: str, help: str, **kw: Any) -> Option:
    return Option(flag, None, help, group=KAFKA_SECURITY, **kw)


# each option with the client keyword it becomes
_REDIS_TLS = (
    (_redis_tls("--redis-ca-cert", "CA to trust (TLS)"), "ssl_ca_certs"),
    (_redis_tls("--redis-cert", "client certificate (TLS)"), "ssl_certfile"),
    (_redis_tls("--redis-key", "client key (TLS)"), "ssl_keyfile"),
)
_KAFKA = (
    (
        _kafka(
            "--kafka-security-protocol",
            "how to talk to the brokers",
            choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        ),
        "security_protocol",
    ),
    (_kafka("--kafka-sasl-mechanism", "e.g. PLAIN, SCRAM-SHA-512"), "sasl_mechanism"),
    (_kafka("--kafka-sasl-username", "SASL user"), "sasl_plain_username"),
    (_kafka("--kafka-sasl-password", "SASL password"), "sasl_plain_password"),
    (_kafka("--kafka-ssl-cafile", "CA to trust", metavar="PEM"), "ssl_cafile"),
    (_kafka("--kafka-ssl-certfile", "client certificate", metavar="PEM"), "ssl_certfile"),
    (_kafka("--kafka-ssl-keyfile", "client key", metavar="PEM"), "ssl_keyfile"),
)
KAFKA_OPTION = Option(
    "--kafka-option",
    (),
    "any other kafka-python client option, e.g. request_timeout_ms=60000 (repeatable)",
    key_value,
    metavar="NAME=VALUE",
    many=True,
    group=KAFKA_SECURITY,
)
REDIS_TLS = tuple(o for o, _ in _REDIS_TLS)
KAFKA_SECURITY_OPTIONS = (*(o for o, _ in _KAFKA), KAFKA_OPTION)


def redis_options(a: argparse.Namespace) -> dict[str, Any]:
    """redis-py keyword arguments for the TLS flags that were given."""
    return {kw: getattr(a, o.dest) for o, kw in _REDIS_TLS if getattr(a, o.dest, None)}


def redis_tls(a: argparse.Namespace) -> dict[str, str]:
    """The TLS flags that were given, by short name (``ca_cert``, ``cert``, ``key``), as the
    trainer hands them to its writer child (`trainer.daemon.writer_process`)."""
    given = {o.dest: getattr(a, o.dest) for o, _ in _REDIS_TLS if getattr(a, o.dest, None)}
    return {dest.removeprefix("redis_"): value for dest, value in given.items()}


def kafka_options(a: argparse.Namespace) -> dict[str, object]:
    """kafka-python client options from the kafka security flags."""
    options: dict[str, object] = dict(getattr(a, KAFKA_OPTION.dest) or [])
    options.update({kw: getattr(a, o.dest) for o, kw in _KAFKA if getattr(a, o.dest)})
    return options


def _field_map(text: str, flag: str) -> FieldMap:
    try:
        return FieldMap.parse(text)
    except MappingError as e:
        raise ValueError(f"{flag}: {e}") from None


def _context_columns(text: str, flag: str) -> tuple[tuple[str, str], ...]:
    try:
        return FieldMap.parse_context(text)
    except MappingError as e:
        raise ValueError(f"{flag}: {e}") from None


def _least_weight(text: str, flag: str) -> float:
    try:
        w = float(text)
    except ValueError:
        raise ValueError(f"{flag} takes a number, got {text!r}") from None
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"{flag} must be a number >= 0, got {text!r}")
    return w


def _delimiter(text: str, flag: str) -> str:
    text = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(text) != 1:
        raise ValueError(f"{flag} is one character (a tab: \\t), got {text!r}")
    return text


def _log(flag: str, default: Any, help: str, parse: Any = None, **kw: Any) -> Option:
    return Option(flag, default, help, parse, group=LOG_FORMAT, **kw)


FORMAT = _log(
    "--format",
    None,
    "the log's format; default: from its name (.jsonl, .csv, .tsv, .parquet; .gz looked "
    "through; any other name is JSONL)",
    choices=FORMATS,
)
MAP = _log(
    "--map",
    None,
    "which column holds which field: user=COL,item=COL,ts=COL:UNIT,weight=COL,event_id=COL; "
    "UNIT is s, ms or iso (default ms); a field not named comes from the column of its own "
    'name; in the TOML file a table, map = {user = "userId", ts = "timestamp:s"}',
    _field_map,
    metavar="FIELD=COLUMN,...",
)
CONTEXT_COLUMNS = _log(
    "--context-columns",
    None,
    "columns that go to the event's context, as COLUMN or KEY=COLUMN, comma-separated "
    "(text that reads as a number becomes one)",
    _context_columns,
    metavar="COLUMNS",
)
MIN_WEIGHT = _log(
    "--min-weight",
    0.0,
    "keep only events of weight >= W, e.g. --map weight=rating --min-weight 4 (ratings as "
    "implicit feedback); the others are dropped and counted, not dead-lettered",
    _least_weight,
    metavar="W",
)
HEADER = _log(
    "--no-header",
    True,
    "CSV/TSV: the first row is data, not a header; columns are numbered from 1 "
    "(--map user=1,item=2,ts=4:s)",
)
DELIMITER = _log(
    "--delimiter",
    None,
    "CSV/TSV: the field separator, one character (\\t or tab for a tab); default , for CSV "
    "and a tab for TSV",
    _delimiter,
    metavar="CHAR",
)
LOG_FORMAT_OPTIONS = (FORMAT, MAP, CONTEXT_COLUMNS, MIN_WEIGHT, HEADER, DELIMITER)


def log_format(a: argparse.Namespace) -> LogFormat:
    """How to read a log, from the log format flags."""
    fields = getattr(a, MAP.dest) or FieldMap()
    context = getattr(a, CONTEXT_COLUMNS.dest)
    if context:
        fields = dataclasses.replace(fields, context=context)
    return LogFormat(
        format=getattr(a, FORMAT.dest),
        fields=fields,
        header=HEADER.setting(getattr(a, HEADER.dest)),
        delimiter=getattr(a, DELIMITER.dest),
        min_weight=getattr(a, MIN_WEIGHT.dest),
    )
