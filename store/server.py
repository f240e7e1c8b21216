"""A throwaway `redis-server` on a free loopback port, for tests, the demo and fault drills.

No persistence by default (`--save "" --appendonly no`): a restart starts empty, like a lost
server. `appendonly=True` logs every write (AOF, fsync always) into the server's folder, which
lives as long as the object: after `kill()` and `start()` the server comes back with what it had,
half-written versions included. `acl` adds ACL users (lines of an ACL file, e.g. from
`store.acl`); `tls` serves TLS only (`rediss://`), with `client_kwargs` for clients.

>>> with RedisServer() as server:
...     ping(server.url)
True
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from store.child import ChildServer, stop_child
from store.errors import StoreError


def ping(url: str, timeout: float = 0.5, **client_kwargs: Any) -> bool:
    """True if a Redis server answers PING at `url` within `timeout` seconds (no retries)."""
    client = redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **client_kwargs,
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for a TLS server: its certificate and key, and the CA clients trust."""

    cert: Path
    key: Path
    ca: Path


class RedisServer(ChildServer):
    """Runs `redis-server` on 127.0.0.1 until `stop()` (or the end of a `with` block)."""

    def __init__(
        self,
        port: int | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        *,
        appendonly: bool = False,
        acl: list[str] | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StoreError(
                "redis-server is not on PATH: install it (apt-get install redis-server) "
                "or point REDIS_URL at a running server"
            )
        self.binary = binary
        self.port = port if port is not None else free_port()
        self.password = password
        self.timeout = timeout
        self.appendonly = appendonly
        self.acl = list(acl or [])
        self.tls = tls
        self.folder = Path(tempfile.mkdtemp(prefix="recstream-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None  # stops the server if we are dropped
        self._remove_folder = weakref.finalize(self, shutil.rmtree, self.folder, True)
        self.start()

    @property
    def url(self) -> str:
        """The URL of the default (administrator) user."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{self._scheme}://{auth}127.0.0.1:{self.port}/0"

    def url_for(self, user: str, password: str) -> str:
        """The URL of an ACL user."""
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"{self._scheme}://{auth}@127.0.0.1:{self.port}/0"

    @property
    def client_kwargs(self) -> dict[str, Any]:
        """What a redis-py client needs besides the URL (the CA, with TLS)."""
        return {"ssl_ca_certs": str(self.tls.ca)} if self.tls else {}

    @property
    def _scheme(self) -> str:
        return "rediss" if self.tls else "redis"

    def __repr__(self) -> str:  # never shows the password
        state = "running" if self.running else "stopped"
        return f"RedisServer(127.0.0.1:{self.port}, {state})"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server (again) on `self.port`; returns once it answers PING."""
        if self.running:
            return
        folder = self.folder
        log = folder / "redis.log"
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", str(folder),
            "--logfile", str(log),
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.tls:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "optional",
            ]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        if self.acl:
            admin = f">{self.password}" if self.password else "nopass"
            lines = [f"user default on {admin} ~* &* +@all", *self.acl]
            acl_file = folder / "users.acl"
            acl_file.write_text("\n".join(lines) + "\n")
            acl_file.chmod(0o600)
            args += ["--aclfile", str(acl_file)]
        elif self.password:
            args += ["--requirepass", self.password]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        self._finalizer = weakref.finalize(self, stop_child, self._proc, 5)
        deadline = time.monotonic() + self.timeout
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self.stop()
                raise StoreError(
                    f"redis-server did not start on port {self.port} within {self.timeout} s "
                    f"(port taken? pass another port):\n{tail}"
                )
            time.sleep(0.02)

    def _answers(self) -> bool:
        """True once our process (not another server on the port) answers."""
        assert self._proc is not None
        client = redis.Redis.from_url(
            self.url,
            socket_timeout=0.2,
            socket_connect_timeout=0.2,
            retry=Retry(NoBackoff(), 0),
            **self.client_kwargs,
        )
        try:
            return int(client.info("server")["process_id"]) == self._proc.pid
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s); with `appendonly`, what it
        holds is on disk for the next `start()`."""
        if self._finalizer is not None:
            self._finalizer()
        self._proc = self._finalizer = None

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        self._remove_folder()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; `restart()` brings it back (empty)."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
