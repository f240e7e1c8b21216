"""What an idle trainer costs: CPU per thread of `recstream train` with nothing to read.

`python -m bench.idle --seconds 30` starts a broker (or uses KAFKA_BOOTSTRAP_SERVERS) and a
redis-server of its own, runs `recstream train` on an empty topic with a metrics port, a writer
(--redis) and the progress bar on (its stderr is a terminal), waits until it owns its
partitions, then reads every thread's CPU time (/proc/PID/task/TID/stat) of the trainer and
its child processes twice, `seconds` apart. Python threads are named from `py-spy dump`.
The target: no idle helper thread above 1% of a core.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """`pid` and its descendants."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parents.items() if pp == p]
    return out


def _ticks(pid: int) -> dict[int, tuple[str, int]]:
    """tid -> (comm, utime + stime in ticks) of every thread of `pid`."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[int(task.name)] = (comm, int(fields[11]) + int(fields[12]))
    return out


def _python_names(pid: int) -> dict[int, str]:
    """tid -> Python thread name, from `py-spy dump` (empty if py-spy is not there)."""
    spy = Path(sys.executable).with_name("py-spy")
    try:
        text = subprocess.run(
            [str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names = {}
    for m in re.finditer(r'^Thread (0x[0-9A-Fa-f]+|\d+) \([^)]*\): "([^"]*)"', text, re.M):
        ident = m.group(1)
        names[int(ident, 16) if ident.startswith("0x") else int(ident)] = m.group(2)
    return names


def measure(bootstrap: str, redis_url: str, seconds: float, work: Path) -> list[dict[str, object]]:
    port = _free_port()
    topic = f"idle-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "trainer", "train", "--source", f"kafka://{bootstrap}/{topic}",
           "--group", f"idle-{uuid.uuid4().hex[:6]}", "--checkpoint-dir", str(work / "ckpt"),
           "--metrics-port", str(port), "--redis", redis_url, "--log-level", "INFO"]  # fmt: skip
    master, slave = pty.openpty()  # stderr a terminal: the progress bar is on
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen: list[str] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.append(chunk.decode(errors="replace"))

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while "reading from offset" not in "".join(seen):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the trainer did not reach its partitions:\n" + "".join(seen))
            time.sleep(0.2)
        time.sleep(5)  # past the start's one-off work
        pids = _children(proc.pid)
        names = {pid: _python_names(pid) for pid in pids}
        before = {pid: _ticks(pid) for pid in pids}
        t0 = time.monotonic()
        time.sleep(seconds)
        after = {pid: _ticks(pid) for pid in pids}
        took = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(master)
    rows = []
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline")
        role = "trainer" if pid == proc.pid else _role(before[pid])
        for tid, (comm, ticks) in after[pid].items():
            if tid not in before[pid]:
                continue
            used = (ticks - before[pid][tid][1]) / TICK
            rows.append(
                {
                    "process": role,
                    "pid": pid,
                    "tid": tid,
                    "thread": names[pid].get(tid, comm),
                    "core_share": used / took,
                }
            )
        del cmdline
    return rows


def _role(threads: dict[int, tuple[str, int]]) -> str:
    comms = {c for c, _ in threads.values()}
    return "child: " + ",".join(sorted(comms))[:40]


def _free_port() -> int:
    from stream.broker import free_port

    return free_port()


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| process | thread | tid | share of a core |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -float(r["core_share"])):  # type: ignore[arg-type]
        lines.append(
            f"| {r['process']} (pid {r['pid']}) | {r['thread']} | {r['tid']} | "
            f"{100 * float(r['core_share']):.2f}% |"  # type: ignore[arg-type]
        )
    total = sum(float(r["core_share"]) for r in rows)  # type: ignore[arg-type]
    lines.append(f"| all | | | {100 * total:.2f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    p.add_argument("--seconds", type=float, default=30.0)
    a = p.parse_args(argv)
    from bench import services

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recstream-idle-")))
        bootstrap = services.broker(stack)
        url, _ = services.redis_server(stack)
        rows = measure(bootstrap, url, a.seconds, work)
    print(f"idle for {a.seconds:.0f} s; load average {os.getloadavg()[0]:.1f} (2 cores)\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
