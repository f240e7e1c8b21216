"""compose.yaml cannot run here (no Docker engine): check it parses and matches the CLI."""

from __future__ import annotations

from pathlib import Path

import yaml

from trainer.cli.main import build_parser
from trainer.cli.resolve import _options, _subparsers, resolve

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_services_present():
    services = _compose()["services"]
    assert {"kafka", "redis", "trainer", "writer"} <= set(services)
    assert services["trainer"]["build"] == "." and (ROOT / "Dockerfile").exists()


def test_commands_parse_with_the_cli():
    parser = build_parser()
    services = _compose()["services"]
    for name in ("trainer", "writer"):
        args = parser.parse_args([str(x) for x in services[name]["command"]])
        assert args.command in ("train", "publish")
    train = parser.parse_args([str(x) for x in services["trainer"]["command"]])
    assert train.source.startswith("kafka://kafka:9092/")


def test_env_names_are_options_of_the_service_command():
    """Each RECSTREAM_* a service sets is an option of the command that service runs, and the
    CLI resolves it to the value compose gives (env fills what the flags leave unset)."""
    parser = build_parser()
    services = _compose()["services"]
    for name in ("trainer", "writer"):
        argv = [str(x) for x in services[name]["command"]]
        env = {k: str(v) for k, v in services[name].get("environment", {}).items()}
        command = parser.parse_args(argv).command
        dests = {a.dest for a in _options(_subparsers(parser)[command])}
        for var, value in env.items():
            dest = var.removeprefix("RECSTREAM_").lower()
            assert var.startswith("RECSTREAM_") and dest in dests, (
                f"compose sets {var} for `recstream {command}`, which has no --"
                f"{dest.replace('_', '-')}"
            )
            assert str(getattr(resolve(parser, argv, env), dest)) == value


def test_services_wait_for_healthy_dependencies_and_restart():
    """depends_on alone does not wait for readiness: Kafka and Redis have health checks, the
    trainer and the writer start once they pass, and come back after exiting (e.g. exit 1
    after --connect-timeout when a dependency went away)."""
    services = _compose()["services"]
    for name in ("kafka", "redis"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 3
    assert services["trainer"]["depends_on"]["kafka"] == {"condition": "service_healthy"}
    assert services["writer"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    for name in ("trainer", "writer"):
        assert services[name]["restart"] in ("unless-stopped", "on-failure", "always")
