"""`recstream status`: the trainer's state as one JSON object, read from its checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainer.daemon.checkpoint import META, CheckpointStore
from trainer.daemon.publish import read_published


def status(checkpoint_dir: Path, namespace: str) -> dict[str, Any]:
    ckpt = CheckpointStore(checkpoint_dir).latest(files=(META,))
    published = read_published(checkpoint_dir, namespace)
    if ckpt is None:
        return {
            "checkpoint": None,
            "events_applied": 0,
            "events_rejected": 0,
            "offsets": {},
            "checkpoint_time": None,
            "published_version": published["version"] if published else None,
        }
    m = ckpt.meta
    learner = m["learner"]
    return {
        "checkpoint": ckpt.id,
        "events_applied": m["events_applied"],
        "events_rejected": m["events_rejected"],
        "offsets": m["offsets"],
        "checkpoint_time": datetime.fromtimestamp(m["created_ms"] / 1000, UTC).isoformat(),
        "published_version": published["version"] if published else None,
        "published_time": (
            datetime.fromtimestamp(published["published_ms"] / 1000, UTC).isoformat()
            if published
            else None
        ),
        **_vocabulary(learner, m.get("group")),
        "quality": _quality(learner),
        "source": m["source"],
        "settings": m["settings"],
    }


def _vocabulary(learner: dict[str, Any], group: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if group is not None:  # a group's checkpoint: each rank's users are in its part
        out.update(users=group["users"], workers=group["world"])
    for name in ("users", "items"):
        vocab = learner.get(name)
        if vocab is None:
            continue
        out[name] = sum(i is not None for i in vocab["ids"])
        out[f"{name}_admitted"] = vocab["admitted"]
        out[f"{name}_evicted"] = vocab["evicted"]
    return out


def _quality(learner: dict[str, Any]) -> dict[str, Any]:
    """Progressive (test-then-train) figures since the model started."""
    p = learner.get("progressive", {})
    out: dict[str, Any] = {f"recall@{k}": round(v[1], 5) for k, v in p.get("running", {}).items()}
    if p:
        out["evaluated"] = int(next(iter(p["running"].values()))[0]) if p["running"] else 0
        out["loss"] = round(p["loss"][1], 5)
        out["drifts"] = p["drifts"]
    return out
