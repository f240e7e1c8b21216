"""`recstream train` run as a user runs it, and what its log and metrics say about a run.

- `steady_rate`: events/s from the first partition assignment to the last event (the child
  source process logs "reading from offset" to the same stderr, with the same format);
- `restart`: seconds from process start to the first trained event, split by the log lines
  that mark each phase and the first `recstream_events_trained` > 0 on /metrics.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_lines(log: str) -> list[tuple[float, str]]:
    """(epoch seconds, line) of every timestamped line of the daemon's log."""
    out = []
    for line in log.splitlines():
        m = _LOG_TS.match(line)
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((t, line))
    return out


def steady_rate(log: str, events: int) -> float | None:
    """Events/s from the daemon's INFO log: first partition assignment ("reading from
    offset") to the last event (the idle-stop line minus its idle seconds): the group join
    and start-up left out. None if those lines are not there."""
    start = stop = None
    for t, line in log_lines(log):
        if start is None and "reading from offset" in line:
            start = t
        idle = re.search(r"no event for ([0-9.]+) s", line)
        if idle:
            stop = t - float(idle.group(1))
    if start is None or stop is None or stop <= start:
        return None
    return events / (stop - start)


def command(bootstrap: str, topic: str, group: str, checkpoints: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trainer", "train", "--source", f"kafka://{bootstrap}/{topic}",
            "--group", group, "--checkpoint-dir", str(checkpoints), "--stop-when-idle", "3",
            "--checkpoint-every", "3600", "--no-progress", "--log-level", "INFO",
            *extra]  # fmt: skip


def train(cmd: list[str], timeout_s: float = 3600) -> tuple[dict[str, Any], str, float]:
    """Run `recstream train` to its idle stop: (its summary line, its log, wall seconds)."""
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"recstream train failed ({done.returncode}): {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr, wall


def _trained(port: int) -> float | None:
    """recstream_events_trained from /metrics, None while the server is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return None
    m = re.search(r"^recstream_events_trained_total ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


# The log lines that end each phase of a start, in order; a phase without a line is merged
# into the next one (and the report says which line would split it).
PHASES = (
    ("interpreter + CLI imports and settings", "train: source"),
    ("trainer imports (torch, ...) + metrics server", "metrics on http"),
    ("lock + checkpoint load (Checkpointer.restore)", "resumed from checkpoint"),
    ("source process start + group join, to the first assignment", "reading from offset"),
)


def restart(cmd: list[str], port: int, timeout_s: float = 300) -> dict[str, Any]:
    """Start `cmd` (with --metrics-port `port`) and time it to its first trained batch;
    it then runs to its idle stop. Returns the phases (seconds) and the total."""
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = None
    try:
        deadline = time.monotonic() + timeout_s
        while first is None and time.monotonic() < deadline and proc.poll() is None:
            trained = _trained(port)
            if trained:
                first = time.time()
                break
            time.sleep(0.01)
        _, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or first is None:
        raise RuntimeError(f"the restart did not train ({proc.returncode}): {err[-1500:]}")
    lines = log_lines(err)
    phases: dict[str, float] = {}
    last = started
    for name, marker in PHASES:
        at = next((t for t, line in lines if marker in line), None)
        if at is None:
            continue
        phases[name] = at - last
        last = at
    phases["first batch learned (seen on /metrics)"] = first - last
    return {"phases": phases, "total_s": first - started, "log": err}


def import_times(module: str = "trainer.daemon.loop", top: int = 8) -> list[tuple[str, float]]:
    """Seconds of `import module` by top-level package: the self time of each of its modules
    (python -X importtime), summed, so a package's dependencies count under their own name."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    by_package: dict[str, float] = {}
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)", line)
        if m:
            package = m.group(2).split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(m.group(1)) / 1e6
    return sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
