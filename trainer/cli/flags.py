"""Options several commands share: the common ones, Redis (URL and TLS) and Kafka security.

Each is declared once (`trainer.options.Option`); `kafka_options` and `redis_options` turn the
parsed flags into client keyword arguments.
"""

from __future__ import annotations

import argparse
from typing import Any

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
SECTIONS = {
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
