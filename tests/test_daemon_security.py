"""Security: least-privilege Redis ACL users for the writer and the readers, TLS (rediss://),
and secrets that never reach a log. Real redis-server, real `recstream` processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from store import Reader, RedisServer
from store.acl import acl_file_line, reader_rules, writer_rules
from store.server import TLSFiles
from stream.synthetic import World, generate, write_jsonl
from tests.faultkit import SMALL_MODEL, snapshot, write_checkpoint

pytestmark = pytest.mark.slow

NS = "reco"
WRITER_PW, READER_PW = "wr1ter-s3cret", "r3ader-s3cret"
ACL = [
    acl_file_line("recstream-writer", WRITER_PW, writer_rules(NS)),
    acl_file_line("recstream-reader", READER_PW, reader_rules(NS)),
]


def recstream(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> TLSFiles:
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS test needs the openssl command (apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=recstream-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext")  # fmt: skip
    return TLSFiles(cert=d / "server.crt", key=d / "server.key", ca=d / "ca.crt")


def _checkpoints(directory: Path, versions: range) -> None:
    for v in versions:
        write_checkpoint(directory, snapshot(v, items=500, stamped=True))


def test_writer_and_reader_under_least_privilege_acl_users(tmp_path):
    with RedisServer(acl=ACL) as server:
        writer_url = server.url_for("recstream-writer", WRITER_PW)
        reader_url = server.url_for("recstream-reader", READER_PW)
        admin = redis.Redis.from_url(server.url)
        admin.set("other:secret", "x")
        ckpt_dir = tmp_path / "ckpt"
        for v in (1, 2, 3):  # each publish also sweeps old versions (SCAN, UNLINK)
            _checkpoints(ckpt_dir, range(v, v + 1))
            out = recstream(
                "publish", "--checkpoint-dir", str(ckpt_dir), "--namespace", NS, "--grace", "0",
                "--keep", "1", env={"RECSTREAM_REDIS": writer_url},
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["published_version"] == v
            assert WRITER_PW not in out.stderr + out.stdout
        assert sorted(k.decode() for k in admin.keys(f"{NS}:v:*:meta")) == [f"{NS}:v:3:meta"]
        assert admin.hget(f"{NS}:v:3:meta", "users_base") == b"2"  # users were COPYed over

        out = recstream(
            "recommend", "--namespace", NS, "--user", "u1", "-k", "3",
            env={"RECSTREAM_REDIS": reader_url},
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert [r["score"] for r in json.loads(out.stdout)] == [0.0, 0.0, 0.0]

        reader = redis.Redis.from_url(reader_url)
        for command in [
            ("SET", f"{NS}:current", "1"),  # read-only
            ("UNLINK", f"{NS}:v:3:meta"),
            ("GET", "other:secret"),  # outside the namespace
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "requirepass"),
        ]:
            with pytest.raises(redis.exceptions.NoPermissionError):
                reader.execute_command(*command)
        writer = redis.Redis.from_url(writer_url)
        for command in [
            ("GET", "other:secret"),
            ("SET", "other:secret", "y"),
            ("FLUSHDB",),
            ("CONFIG", "SET", "appendonly", "no"),
            ("ACL", "LIST"),
        ]:
            with pytest.raises(redis.exceptions.NoPermissionError):
                writer.execute_command(*command)
        assert admin.get("other:secret") == b"x"
        for c in (admin, reader, writer):
            c.close()


def test_tls_with_acl_users_for_the_trainer_its_writer_and_a_reader(tmp_path, tls_files):
    events = tmp_path / "events.jsonl"
    lines = [*generate(World(users=50, items=80, clusters=2, seed=1), 3000)]
    write_jsonl(events, lines[:2000])
    with RedisServer(acl=ACL, tls=tls_files) as server:
        writer_url = server.url_for("recstream-writer", WRITER_PW)
        assert writer_url.startswith("rediss://")
        ckpt_dir = tmp_path / "ckpt"
        for _ in range(2):  # the second publish copies the first version's users (COPY)
            out = recstream(
                "train", "--source", f"file://{events}", "--checkpoint-dir", str(ckpt_dir),
                "--namespace", NS, "--stop-when-idle", "1", "--no-progress", *SMALL_MODEL,
                "--redis-ca-cert", str(tls_files.ca),
                env={"RECSTREAM_REDIS": writer_url},
            )  # fmt: skip
            assert out.returncode == 0, out.stderr[-3000:]
            assert WRITER_PW not in out.stderr + out.stdout
            assert "rediss://***@127.0.0.1" in out.stderr  # the URL is logged, redacted
            write_jsonl(events, lines)  # the log grows
        version = json.loads(out.stdout.splitlines()[-1])["checkpoint"]
        assert version == 2
        admin = redis.Redis.from_url(server.url, **server.client_kwargs)
        assert admin.hget(f"{NS}:v:2:meta", "users_base") == b"1"  # the COPY path ran
        admin.close()

        reader_url = server.url_for("recstream-reader", READER_PW)
        with Reader.from_url(reader_url, NS, ssl_ca_certs=str(tls_files.ca)) as reader:
            assert reader.version() == version  # the trainer's writer child published over TLS
            assert len(reader.recommend("1", k=5)) == 5
            assert len(reader.recommend_for(k=5)) == 5  # the published query tower
        # the certificate is checked: without the CA the connection is refused
        out = recstream(
            "recommend", "--namespace", NS, "--user", "1",
            env={"RECSTREAM_REDIS": reader_url},
        )  # fmt: skip
        assert out.returncode == 2 and "certificate verify failed" in out.stderr
        assert READER_PW not in out.stderr


def test_the_printed_acl_commands_work_on_a_real_server(tmp_path):
    out = recstream("acl", "--namespace", NS, env={})
    assert out.returncode == 0, out.stderr
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        for line in out.stdout.splitlines():
            line = line.replace("WRITER_PASSWORD", WRITER_PW).replace("READER_PASSWORD", READER_PW)
            assert admin.execute_command(*line.split()) == b"OK"
        ckpt_dir = tmp_path / "ckpt"
        _checkpoints(ckpt_dir, range(1, 2))
        writer_url = server.url_for("recstream-writer", WRITER_PW)
        published = recstream(
            "publish", "--checkpoint-dir", str(ckpt_dir), "--namespace", NS,
            env={"RECSTREAM_REDIS": writer_url},
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        reader = redis.Redis.from_url(server.url_for("recstream-reader", READER_PW))
        assert reader.get(f"{NS}:current") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set(f"{NS}:current", b"2")
        reader.close()
        admin.close()
