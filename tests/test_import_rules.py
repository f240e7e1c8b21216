"""Imports go one way (DESIGN.md): stream/ and store/ never import trainer/, store imports no
stream either; the trainer's core imports neither kafka nor redis (nor stream); no product
module imports bench; kafka-python lives in stream/kafka/ only.

Two checks, because each misses what the other sees. The runtime check imports every module of
a package (walked with pkgutil) in a fresh interpreter, so imports done earlier by this test
process mask nothing, and then looks at `sys.modules`: it sees what a module pulls in through
others. The static check reads every source file's import statements with `ast`, at any depth:
it sees a lazy import inside a function, which importing the module does not run.
Skipped in the walk: only ``__main__`` modules (importing one runs the program). No module of
stream, store or trainer needs an optional dependency, so none is skipped for that.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_IMPORT_IN_STEPS = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    loaded = []
    for step in json.loads(sys.argv[1]):
        for name in step:
            package = importlib.import_module(name)
            for module in pkgutil.walk_packages(package.__path__, name + "."):
                if module.name.rpartition(".")[2] != "__main__":
                    importlib.import_module(module.name)
        loaded.append(sorted({m.split(".")[0] for m in sys.modules}))
    print(json.dumps(loaded))
    """
)


def loaded_in_steps(*steps: list[str]) -> list[set[str]]:
    """In one fresh interpreter, import every module of each step's packages, step after step;
    the top-level names of the modules loaded by the end of each step."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_IN_STEPS, json.dumps(steps)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [set(names) for names in json.loads(done.stdout.splitlines()[-1])]


@pytest.fixture(scope="module")
def core_then_product() -> list[set[str]]:
    """Loaded after the core, then after all of stream, store and trainer (one torch import)."""
    return loaded_in_steps(["trainer.core"], ["stream", "store", "trainer"])


@pytest.mark.slow
def test_the_core_loads_no_kafka_redis_or_stream(core_then_product: list[set[str]]) -> None:
    loaded = core_then_product[0] & {"kafka", "redis", "stream"}
    assert not loaded, f"importing trainer.core loads {sorted(loaded)}"


@pytest.mark.slow
def test_no_product_module_loads_bench(core_then_product: list[set[str]]) -> None:
    assert "bench" not in core_then_product[1], "importing stream, store and trainer loads bench"


def test_stream_and_store_load_no_trainer() -> None:
    (loaded,) = loaded_in_steps(["stream", "store"])
    assert "trainer" not in loaded, "importing stream and store loads trainer"


def imported_roots(path: Path) -> set[str]:
    """The top-level package of every absolute import in `path`, function bodies included.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "m.py"
    >>> _ = f.write_text("import a.b\\ndef g():\\n    from c.d import e\\n    from . import h\\n")
    >>> sorted(imported_roots(f))
    ['a', 'c']
    """
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


# (folders, packages their files must not import, files exempted)
RULES: list[tuple[tuple[str, ...], set[str], tuple[str, ...]]] = [
    (("stream", "store"), {"trainer"}, ()),
    (("store",), {"stream"}, ()),  # downstream services import store alone
    (("trainer/core",), {"kafka", "redis", "stream"}, ()),
    (("stream", "store", "trainer"), {"bench"}, ()),
    (("store", "trainer"), {"kafka"}, ()),
    (("stream",), {"kafka"}, ("stream/kafka",)),
]


def test_no_source_file_imports_against_the_rules() -> None:
    offences = []
    for folders, forbidden, exempt in RULES:
        for path in sources(*folders):
            name = path.relative_to(ROOT).as_posix()
            if name.startswith(exempt):
                continue
            if bad := imported_roots(path) & forbidden:
                offences.append(f"{name} imports {', '.join(sorted(bad))}")
    assert not offences, "\n".join(offences)
