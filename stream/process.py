"""An event source in a process of its own: fetching and decoding off the learner's interpreter.

kafka-python fetches, checks and unpacks records in Python, and decoding is per record: in the
trainer's process that work takes turns with the learner on one interpreter lock. A
`ProcessSource` runs any source (`build(*args, on_revoke=...)`) in a child process and hands
its batches over as `Columns` through a pipe, a few batches ahead; the parent only unpickles a
handful of lists per batch. The contract is the source's own:

- batches arrive in the order the source returned them; `commit` and `flush` run in the child
  and answer when done (or raise what the source raised);
- a revocation in the child (its rebalance listener, with its `poll` waiting) is handed to the
  parent's `on_revoke` on the parent's poll thread *after* the batches fetched before it, and
  the child's listener waits until it returns, so the owner can learn, checkpoint and
  `commit` (which the child runs at once: its poll is waiting on the rebalance) before the
  partitions move;
- the child dies with the parent (PR_SET_PDEATHSIG, and a check of its parent's pid).

Threads in the parent: the caller of `poll` (the poll thread) and a receiver that routes the
child's messages (batches and revocations to `poll`, answers to the caller that waits).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from itertools import count
from typing import Any

from store.child import die_with_parent
from stream.errors import SourceError
from stream.source import Batch, EventSource

log = logging.getLogger(__name__)

Build = Callable[..., EventSource]  # build(*args, on_revoke=...) -> the source, in the child
_WINDOW = 2  # batches the child fetches ahead of the parent


class ProcessSource:
    def __init__(
        self,
        build: Build,
        args: tuple[Any, ...],
        max_events: int,
        timeout_s: float,
        on_revoke: Callable[[Batch], None] | None = None,
        start_timeout_s: float = 120.0,
    ) -> None:
        """Start `build(*args, on_revoke=...)` in a child; `poll` hands over the batches the
        child fetched with `poll(max_events, timeout_s)`. `build` and `args` must pickle."""
        ctx = mp.get_context("spawn")  # a fresh interpreter: no torch, no threads inherited
        self._conn, theirs = ctx.Pipe()
        self._on_revoke = on_revoke
        logs = _log_setup()
        self._proc = ctx.Process(
            target=_child,
            args=(
                theirs,
                build,
                args,
                max_events,
                timeout_s,
                on_revoke is not None,
                os.getpid(),
                logs,
            ),
            name="recstream-source",
            daemon=True,
        )
        self._proc.start()
        theirs.close()
        self._send_lock = threading.Lock()
        self._inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._answers: dict[int, Future[Any]] = {}
        self._ids = count()
        self._closed = False
        self._dead: SourceError | None = None
        self._lag: dict[str, int] = {}
        self._ready = False
        self._assigned: list[str] = []
        self._receiver = threading.Thread(target=self._receive, name="recstream-source-rx")
        self._receiver.daemon = True
        self._receiver.start()
        started = self._inbox.get(timeout=start_timeout_s)
        if started[0] == "error":
            self.close()
            raise started[1]
        self._identity: dict[str, str] = started[1]

    # ---- the parent's side of the pipe -----------------------------------------------------
    def _receive(self) -> None:
        """Route every message from the child until the pipe closes."""
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                died = SourceError("the source process ended (killed, or out of memory)")
                self._dead = died
                for answer in list(self._answers.values()):
                    answer.set_exception(died)
                self._inbox.put(("error", died))
                return
            if msg[0] == "answer":
                answer = self._answers.pop(msg[1])
                if msg[2] is None:
                    answer.set_result(msg[3])
                else:
                    answer.set_exception(msg[2])
            else:
                self._inbox.put(msg)

    def _send(self, *msg: Any) -> None:
        with self._send_lock:
            self._conn.send(msg)

    def _ask(self, what: str, *args: Any) -> Any:
        """Run `what` in the child and wait for its answer (or its error)."""
        rid = next(self._ids)
        answer: Future[Any] = Future()
        self._answers[rid] = answer
        if self._dead is not None:
            raise self._dead
        self._send(what, rid, *args)
        return answer.result()

    # ---- EventSource -----------------------------------------------------------------------
    def poll(self, max_events: int, timeout_s: float) -> Batch:
        """The next batch the child fetched (its own `max_events`), or an empty one after
        `timeout_s`. A revocation is handed to `on_revoke` here, in order."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                msg = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return Batch()
            kind = msg[0]
            if kind == "error":
                raise msg[1]
            if kind == "batch":
                _, columns, offsets, rejected, self._lag, self._ready, self._assigned = msg
                if len(columns):
                    self._send("take")
                return Batch(offsets=offsets, rejected=rejected, columns=columns)
            if kind == "revoke":
                _, token, columns, offsets, rejected = msg
                try:
                    if self._on_revoke is not None:
                        self._on_revoke(Batch(offsets=offsets, rejected=rejected, columns=columns))
                finally:
                    self._send("revoked", token)

    def flush(self) -> None:
        self._ask("flush")

    def commit(self, offsets: dict[str, int]) -> None:
        self._ask("commit", offsets)

    def lag(self) -> dict[str, int]:
        return dict(self._lag)

    def ready(self) -> bool:
        return self._ready

    def assigned(self) -> list[str]:
        return list(self._assigned)

    def identity(self) -> dict[str, str]:
        return dict(self._identity)

    def close(self) -> None:
        """Close the source in the child (it leaves its group, flushes dead letters), then end
        the child; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._ask("close")
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            log.error("the source process did not stop; killing it")
            self._proc.kill()
            self._proc.join()
        self._conn.close()


# ---- the child -------------------------------------------------------------------------------
def _child(
    conn: Any,
    build: Build,
    args: tuple[Any, ...],
    max_events: int,
    timeout_s: float,
    revocable: bool,
    parent: int,
    logs: dict[str, Any],
) -> None:
    _die_with(parent)
    _log_like(logs)
    # the parent decides when to stop: a signal to the whole process group (Ctrl-C in a
    # terminal, torchrun stopping its ranks) reaches the parent, which closes this child
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    send_lock = threading.Lock()

    def send(*msg: Any) -> None:
        with send_lock:
            conn.send(msg)

    commands: queue.Queue[tuple[Any, ...]] = queue.Queue()
    tokens = count()
    holder: dict[str, EventSource] = {}

    def answer(cmd: tuple[Any, ...]) -> bool:
        """Run one command from the parent; False once asked to close."""
        kind, rid, *rest = cmd
        error, result = None, None
        try:
            if kind == "flush":
                holder["source"].flush()
            elif kind == "commit":
                holder["source"].commit(rest[0])
            elif kind == "close":
                holder["source"].close()
        except Exception as e:
            error = e
        send("answer", rid, _portable(error), result)
        return kind != "close"

    def on_revoke(batch: Batch) -> None:
        """On the source's rebalance thread: the parent learns, checkpoints and commits."""
        token = next(tokens)
        send("revoke", token, batch.as_columns(), batch.offsets, batch.rejected)
        while True:
            cmd = commands.get()
            if cmd[0] == "revoked" and cmd[1] == token:
                return
            if cmd[0] in ("flush", "commit"):
                answer(cmd)
            elif cmd[0] == "gone":
                raise SourceError("the trainer went away during a revocation")
            else:
                commands.put(cmd)  # e.g. "take": for the main loop, after the rebalance
                time.sleep(0.001)

    def read() -> None:
        while True:
            try:
                commands.put(conn.recv())
            except (EOFError, OSError):
                commands.put(("gone",))
                return

    threading.Thread(target=read, name="recstream-source-cmd", daemon=True).start()
    try:
        source = build(*args, on_revoke=on_revoke if revocable else None)
    except Exception as e:
        send("error", _portable(e))
        return
    holder["source"] = source
    send("started", source.identity())
    ahead = 0
    try:
        while True:
            while True:  # commands first; block while the parent is a window behind
                try:
                    cmd = commands.get(timeout=0.05 if ahead >= _WINDOW else 0)
                except queue.Empty:
                    break
                if cmd[0] == "take":
                    ahead -= 1
                elif cmd[0] == "gone" or (cmd[0] == "close" and not answer(cmd)):
                    return
                elif cmd[0] in ("flush", "commit"):
                    answer(cmd)
            if os.getppid() != parent:
                return
            if ahead >= _WINDOW:
                continue
            batch = source.poll(max_events, timeout_s)
            columns = batch.as_columns()
            assigned = getattr(source, "assigned", None)
            send(
                "batch",
                columns,
                batch.offsets,
                batch.rejected,
                source.lag(),
                source.ready(),
                assigned() if callable(assigned) else [],
            )
            if len(columns):
                ahead += 1
    except Exception as e:
        with contextlib.suppress(Exception):
            send("error", _portable(e))
    finally:
        with contextlib.suppress(Exception):
            source.close()


def _log_setup() -> dict[str, Any]:
    """How this process logs (root level and format, the levels set on named loggers), for the
    child to log alike to the same stderr (a spawned process starts with no logging set up)."""
    root = logging.getLogger()
    handler = next(iter(root.handlers), None)
    fmt = handler.formatter._fmt if handler is not None and handler.formatter else None
    named = {
        name: lg.level
        for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and lg.level != logging.NOTSET
    }
    return {"level": root.level, "format": fmt, "named": named}


def _log_like(logs: dict[str, Any]) -> None:
    logging.basicConfig(level=logs["level"], format=logs["format"] or logging.BASIC_FORMAT)
    for name, level in logs["named"].items():
        logging.getLogger(name).setLevel(level)


def _portable(error: BaseException | None) -> BaseException | None:
    """`error`, or a SourceError saying it, if it does not pickle."""
    if error is None:
        return None
    import pickle

    try:
        pickle.dumps(error)
        return error
    except Exception:
        return SourceError(f"{type(error).__name__}: {error}")


def _die_with(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; SIGTERM is ignored
    here, and a fetcher has nothing to save); else the loop's check of the parent's pid does
    it."""
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)
