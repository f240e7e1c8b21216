"""Flags of the I/O shell shared by several commands: operations, metrics, Redis and Kafka
security. Parsers here raise `argparse.ArgumentTypeError` naming the flag, so a bad value from
the environment or a TOML file is reported the same way (`trainer.cli.resolve`)."""

from __future__ import annotations

import argparse
import math
from typing import Any


def add_redis_tls(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "redis security",
        "Put an ACL user and password in the URL (redis://USER:PASSWORD@HOST:PORT/DB; better "
        "in RECSTREAM_REDIS than on the command line); rediss:// connects with TLS.",
    )
    g.add_argument("--redis-ca-cert", default=None, metavar="PEM", help="CA to trust (TLS)")
    g.add_argument("--redis-cert", default=None, metavar="PEM", help="client certificate (TLS)")
    g.add_argument("--redis-key", default=None, metavar="PEM", help="client key (TLS)")


def redis_options(a: argparse.Namespace) -> dict[str, Any]:
    """redis-py keyword arguments for the TLS flags that were given."""
    names = {
        "redis_ca_cert": "ssl_ca_certs",
        "redis_cert": "ssl_certfile",
        "redis_key": "ssl_keyfile",
    }
    return {kw: getattr(a, dest) for dest, kw in names.items() if getattr(a, dest, None)}


def add_kafka_security(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "kafka security",
        "Passed to every Kafka client as kafka-python options (keep the password in "
        "RECSTREAM_KAFKA_SASL_PASSWORD, not on the command line).",
    )
    g.add_argument(
        "--kafka-security-protocol",
        default=None,
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
    )
    g.add_argument("--kafka-sasl-mechanism", default=None, help="e.g. PLAIN, SCRAM-SHA-512")
    g.add_argument("--kafka-sasl-username", default=None)
    g.add_argument("--kafka-sasl-password", default=None)
    g.add_argument("--kafka-ssl-cafile", default=None, metavar="PEM")
    g.add_argument("--kafka-ssl-certfile", default=None, metavar="PEM")
    g.add_argument("--kafka-ssl-keyfile", default=None, metavar="PEM")
    g.add_argument(
        "--kafka-option",
        action="append",
        type=key_value("--kafka-option"),
        default=[],
        metavar="NAME=VALUE",
        help="any other kafka-python client option, e.g. request_timeout_ms=60000 (repeatable)",
    )


def key_value(name: str):
    def parse(text: str) -> tuple[str, object]:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{name} takes NAME=VALUE, got {text!r}")
        value: object = raw
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                pass
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        return key.strip(), value

    return parse


def kafka_options(a: argparse.Namespace) -> dict[str, object]:
    """kafka-python client options from the kafka security flags."""
    named = {
        "kafka_security_protocol": "security_protocol",
        "kafka_sasl_mechanism": "sasl_mechanism",
        "kafka_sasl_username": "sasl_plain_username",
        "kafka_sasl_password": "sasl_plain_password",
        "kafka_ssl_cafile": "ssl_cafile",
        "kafka_ssl_certfile": "ssl_certfile",
        "kafka_ssl_keyfile": "ssl_keyfile",
    }
    options: dict[str, object] = dict(a.kafka_option or [])
    options.update({kw: getattr(a, dest) for dest, kw in named.items() if getattr(a, dest)})
    return options


def seconds(name: str, allow_zero: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes seconds, got {text!r}") from None
        if not math.isfinite(v) or not (v >= 0 if allow_zero else v > 0):
            raise argparse.ArgumentTypeError(
                f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, got {text!r}"
            )
        return v

    return parse


def port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--metrics-port takes a port number, got {text!r}"
        ) from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"--metrics-port must be 0..65535, got {v}")
    return v


def add_metrics(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--metrics-port",
        type=port,
        default=None,
        help="serve Prometheus metrics on /metrics and a health check on /healthz",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics server binds (default: %(default)s; 0.0.0.0 in a container)",
    )
