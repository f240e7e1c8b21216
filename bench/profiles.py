"""Where the time goes: py-spy (100 Hz, per thread, child processes too) of `recstream train`
mid-run and of the learner alone, as a top table per thread.

    python -m bench.profiles --events 400000 --seconds 12 -o prof/

profiles, on the pipeline's realistic stream (bench.ceiling.realistic_log): `recstream train`
end to end with the source process (default) and with --no-source-process, each attached
2 s after its first partition assignment for `seconds`; and the learner alone (the default
learner on the same log, in log order) attached once it learns. Each writes py-spy's raw
(collapsed) stacks, from which a flame graph can be drawn, and prints per thread the share
of the samples it was on a CPU and its top functions, by own time and by time inside.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path

RATE = 100
OURS = ("trainer/", "stream/", "store/", "bench/")
_PLUMBING = ("threading.py", "concurrent/futures/thread.py", "<frozen runpy>", "runpy.py")


def _spy() -> str:
    return str(Path(sys.executable).with_name("py-spy"))


def record(pid: int, seconds: float, out: Path) -> Path:
    """py-spy record of `pid` and its child processes for `seconds`, raw stacks per thread."""
    subprocess.run(
        [_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--duration",
         str(int(seconds)), "--threads", "--subprocesses", "--format", "raw", "-o", str(out)],
        check=True, capture_output=True, timeout=seconds + 60,
    )  # fmt: skip
    return out


def _frame(frame: str) -> tuple[str, str]:
    """('function (file)', file) of a raw frame 'function (path:line)'."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:])
    return f"{name} ({short})", path


def top_tables(raw: Path, seconds: float, top: int = 8) -> str:
    """Per process and thread: on-CPU share of the recorded time, top functions by own
    samples and by samples inside (our packages only), from py-spy raw output."""
    threads: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    inside: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    totals: Counter[tuple[str, str]] = Counter()
    labels: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        parts = stack.split(";")
        process = next((p for p in parts if p.startswith("process ")), "process")
        thread = next((p for p in parts if p.startswith("thread ")), "thread")
        frames = [p for p in parts if not p.startswith(("process ", "thread "))]
        key = (process.split(":")[0], thread)
        totals[key] += n
        if not frames:
            continue
        threads[key][_frame(frames[-1])[0]] += n
        own = [_frame(f) for f in frames]
        entry = next((f for f, path in own if not path.endswith(_PLUMBING)), own[0][0])
        labels[key][entry] += n
        for f in dict.fromkeys(f for f, path in own if any(o in path for o in OURS)):
            inside[key][f] += n
    lines = []
    for key, n in totals.most_common():
        process, thread = key
        label = labels[key].most_common(1)[0][0] if labels[key] else ""
        share = n / (RATE * seconds)
        lines.append(f"\n### {process}, {thread}: {label} — on a CPU {share:.0%} of the time")
        lines.append("| own time | function | | time inside (ours) | function |")
        lines.append("|---|---|---|---|---|")
        mine = threads[key].most_common(top)
        ours = inside[key].most_common(top)
        for k in range(max(len(mine), len(ours))):
            a = mine[k] if k < len(mine) else ("", 0)
            b = ours[k] if k < len(ours) else ("", 0)
            lines.append(
                f"| {a[1] / n:.1%} | {a[0]} | | {b[1] / n:.1%} | {b[0]} |"
                if a[0] and b[0]
                else f"| {a[1] / n:.1%} | {a[0]} | | | |"
                if a[0]
                else f"| | | | {b[1] / n:.1%} | {b[0]} |"
            )
    return "\n".join(lines)


def _watch(proc: subprocess.Popen[str], marker: str, seen: list[str]) -> threading.Event:
    """Collect `proc`'s stderr; the event is set once a line holds `marker`."""
    hit = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if marker in line:
                hit.set()

    threading.Thread(target=read, daemon=True).start()
    return hit


def end_to_end(bootstrap: str, topic: str, work: Path, seconds: float, *extra: str) -> Path:
    """py-spy of `recstream train` on `topic`, from 2 s after its first assignment."""
    from bench.daemon import command

    group = f"prof-{uuid.uuid4().hex[:6]}"
    cmd = command(bootstrap, topic, group, work / f"ckpt-{group}", *extra)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        if not _watch(proc, "reading from offset", seen).wait(120):
            raise RuntimeError("recstream train did not start:\n" + "".join(seen[-20:]))
        time.sleep(2)
        out = record(proc.pid, seconds, work / f"e2e{'-'.join(extra)}.raw")
        proc.wait(timeout=600)
    finally:
        _kill_if_running(proc)
    return out


_LEARNER = """
import sys, torch
from pathlib import Path
from bench.ceiling import read_log
from trainer.core.learner import Learner
from trainer.core.settings import ModelSettings
torch.set_num_threads(1)
work = read_log(Path(sys.argv[1]), 1024)
learner = Learner(ModelSettings())
print("learning", flush=True)
for cols in work:
    learner.learn(cols)
"""


def learner_alone(log: Path, work: Path, seconds: float) -> Path:
    """py-spy of the default learner on `log`, once it learns (decoding left out)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LEARNER, str(log)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "learning"
        out = record(proc.pid, seconds, work / "learner.raw")
        proc.wait(timeout=600)
    finally:
        _kill_if_running(proc)
    return out


def _kill_if_running(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__)
    p.add_argument("--events", type=int, default=400_000)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the raw stacks")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from bench import services
    from bench.ceiling import realistic_log
    from stream.replay import replay

    a.output.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recstream-prof-")))
        log = work / "events.jsonl"
        print(realistic_log(log, a.events, a.seed)[1], flush=True)
        bootstrap = services.broker(stack)
        topic = f"prof-{uuid.uuid4().hex[:8]}"
        replay(log, f"kafka://{bootstrap}/{topic}", partitions=4, progress=False)
        runs = {
            "recstream train (source process)": end_to_end(bootstrap, topic, work, a.seconds),
            "recstream train --no-source-process": end_to_end(
                bootstrap, topic, work, a.seconds, "--no-source-process"
            ),
            "learner alone": learner_alone(log, work, a.seconds),
        }
        for name, raw in runs.items():
            kept = a.output / raw.name
            kept.write_bytes(raw.read_bytes())
            print(f"\n## {name} ({a.seconds:.0f} s at {RATE} Hz; raw stacks: {kept})")
            print(top_tables(kept, a.seconds))
    print(f"\nload average {os.getloadavg()[0]:.1f} (2 cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
