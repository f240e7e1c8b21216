"""compose.yaml cannot run here (no Docker engine): check it parses and matches the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from trainer.cli import build_parser

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


def test_env_names_are_ones_the_cli_reads():
    cli_source = "\n".join(p.read_text() for p in (ROOT / "trainer").glob("*.py"))
    read = set(re.findall(r"RECSTREAM_[A-Z_]+", cli_source))
    for name in ("trainer", "writer"):
        for env in _compose()["services"][name].get("environment", {}):
            assert env in read, f"compose sets {env}, which the CLI never reads"
