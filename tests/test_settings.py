"""Settings: flags > RECSTREAM_* environment > TOML file > defaults, checked at start."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.cli.flags import kafka_options, redis_options
from trainer.cli.main import build_parser
from trainer.cli.resolve import redact_url, resolve
from trainer.daemon.settings import TrainSettings
from trainer.errors import ConfigError

TRAIN = ["train", "--source", "kafka://b:9092/t", "--checkpoint-dir", "/tmp/c"]


def parse(argv: list[str], env: dict[str, str] | None = None):
    return resolve(build_parser(), argv, env or {})


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recstream.toml"
    path.write_text(text)
    return path


def test_flag_beats_env_beats_file_beats_default(tmp_path):
    config = toml(tmp_path, "checkpoint-every = 7\nbatch_size = 64\nnamespace = 'file'\n")
    env = {"RECSTREAM_CHECKPOINT_EVERY": "5", "RECSTREAM_CONFIG": str(config)}
    a = parse([*TRAIN, "--checkpoint-every", "3"], env)
    assert (a.checkpoint_every, a.batch_size, a.namespace, a.threads) == (3.0, 64, "file", 1)
    a = parse(TRAIN, env)
    assert a.checkpoint_every == 5.0
    a = parse([*TRAIN, "--config", str(config)])
    assert a.checkpoint_every == 7.0
    assert parse(TRAIN).checkpoint_every == 60.0


def test_a_command_table_wins_over_top_level_keys(tmp_path):
    config = toml(tmp_path, "namespace = 'all'\n[publish]\nnamespace = 'writer'\ninterval = 2\n")
    assert parse(["publish", "--checkpoint-dir", "c", "--config", str(config)]).namespace == (
        "writer"
    )
    assert parse([*TRAIN, "--config", str(config)]).namespace == "all"


def test_required_settings_may_come_from_env_or_file(tmp_path):
    env = {"RECSTREAM_SOURCE": "kafka://b:9092/t", "RECSTREAM_CHECKPOINT_DIR": "/x"}
    a = parse(["train"], env)
    assert a.source == "kafka://b:9092/t" and a.checkpoint_dir == Path("/x")
    config = toml(tmp_path, "[train]\nsource = 'file://e.jsonl'\ncheckpoint-dir = '/y'\n")
    assert parse(["train", "--config", str(config)]).checkpoint_dir == Path("/y")
    with pytest.raises(ConfigError, match=r"--source is required: .*RECSTREAM_SOURCE"):
        parse(["train", "--checkpoint-dir", "/x"])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECSTREAM_BATCH_SIZE": "-3"}, "RECSTREAM_BATCH_SIZE: --batch-size must be > 0"),
        ({"RECSTREAM_BATCH_SIZE": "many"}, "RECSTREAM_BATCH_SIZE: --batch-size takes a whole"),
        ({"RECSTREAM_CHECKPOINT_EVERY": "0"}, "RECSTREAM_CHECKPOINT_EVERY: --checkpoint-every"),
        ({"RECSTREAM_LOG_LEVEL": "LOUD"}, "RECSTREAM_LOG_LEVEL: --log-level must be one of"),
        ({"RECSTREAM_NO_PROGRESS": "maybe"}, "RECSTREAM_NO_PROGRESS: --no-progress is a switch"),
        ({"RECSTREAM_METRICS_PORT": "70000"}, "RECSTREAM_METRICS_PORT: --metrics-port must be"),
    ],
)
def test_bad_env_values_name_the_variable_and_the_flag(env, message):
    with pytest.raises(ConfigError, match=message):
        parse(TRAIN, env)


def test_bad_file_values_and_keys_name_the_file_and_the_key(tmp_path):
    bad_value = toml(tmp_path, "[train]\nbatch-size = 0\n")
    with pytest.raises(ConfigError, match=r"recstream.toml \[train\] batch-size: --batch-size"):
        parse([*TRAIN, "--config", str(bad_value)])
    unknown = toml(tmp_path, "[train]\nbatch-sise = 10\n")
    with pytest.raises(ConfigError, match=r"\[train\] batch-sise is not an option"):
        parse([*TRAIN, "--config", str(unknown)])
    table = toml(tmp_path, "[trian]\nbatch-size = 10\n")
    with pytest.raises(ConfigError, match=r"\[trian\] is not a command"):
        parse([*TRAIN, "--config", str(table)])
    broken = toml(tmp_path, "batch-size = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse([*TRAIN, "--config", str(broken)])
    with pytest.raises(ConfigError, match="does not exist"):
        parse([*TRAIN, "--config", str(tmp_path / "missing.toml")])


def test_switches_lists_and_kafka_options_from_env_and_file(tmp_path):
    env = {
        "RECSTREAM_NO_PROGRESS": "yes",
        "RECSTREAM_KAFKA_OPTION": "request_timeout_ms=60000,ssl_check_hostname=false",
        "RECSTREAM_KAFKA_SASL_PASSWORD": "pw",
        "RECSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    }
    a = parse(TRAIN, env)
    assert a.no_progress is True
    assert kafka_options(a) == {
        "request_timeout_ms": 60000,
        "ssl_check_hostname": False,
        "sasl_plain_password": "pw",
        "security_protocol": "SASL_SSL",
    }
    config = toml(tmp_path, "[train]\nlayers = [32, 16]\nkafka-option = ['retries=3']\n")
    a = parse([*TRAIN, "--config", str(config)])
    assert a.layers == "32,16" and kafka_options(a) == {"retries": 3}


def test_redis_tls_options_reach_redis_py():
    a = parse(["publish", "--checkpoint-dir", "c"], {"RECSTREAM_REDIS_CA_CERT": "/ca.pem"})
    assert redis_options(a) == {"ssl_ca_certs": "/ca.pem"}


def test_demo_takes_flags_only():
    a = parse(["demo"], {"RECSTREAM_NAMESPACE": "production", "RECSTREAM_EVENTS": "5"})
    assert a.namespace == "recstream-demo" and a.events == 100_000


def test_unknown_recstream_variables_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        parse(TRAIN, {"RECSTREAM_BATCHSIZE": "10"})
    assert "RECSTREAM_BATCHSIZE is set but is no recstream option" in caplog.text


def test_secrets_stay_out_of_reprs_and_logs():
    settings = TrainSettings(
        source="kafka://b:9092/t",
        checkpoint_dir=Path("/c"),
        redis="rediss://writer:s3cret@redis:6380/0",
        kafka_options={"sasl_plain_password": "s3cret"},
    )
    assert "s3cret" not in repr(settings)
    assert redact_url(settings.redis) == "rediss://***@redis:6380/0"


def test_the_cli_exits_2_naming_the_bad_setting(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", *TRAIN],
        env={"RECSTREAM_BATCH_SIZE": "0", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "RECSTREAM_BATCH_SIZE: --batch-size must be > 0, got 0" in proc.stderr
