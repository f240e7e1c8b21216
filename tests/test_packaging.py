"""The container image installs the project from what its Dockerfile copies, and nothing more.

The test copies exactly the Dockerfile's COPY sources into an empty folder and builds a wheel
there, offline, with this environment's setuptools (as `pip install .` in the image would build
one): the build must succeed and ship every module of the product, and no benchmark.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("stream", "store", "trainer")


def copy_sources(dockerfile: str) -> list[str]:
    """The build-context paths the Dockerfile's COPY instructions take.

    >>> copy_sources("FROM x\\nCOPY a.toml b.md ./\\nCOPY --chown=1 src ./src\\n")
    ['a.toml', 'b.md', 'src']
    """
    text = dockerfile.replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        assert not args[0].startswith("["), f"JSON-form COPY is not parsed here: {line}"
        assert not any(w.startswith("--from") for w in words), f"COPY from a stage: {line}"
        sources += args[:-1]  # the last one is the destination
    return sources


@pytest.mark.slow
def test_the_image_copies_build_a_wheel_of_the_product_only(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    sources = copy_sources((ROOT / "Dockerfile").read_text())
    assert "pyproject.toml" in sources
    for source in sources:
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / source)

    build = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--disable-pip-version-check", "-w", str(tmp_path / "dist")),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == set(PRODUCT), f"the wheel holds {sorted(top)}; bench must stay out of it"
    for package in ("trainer/core", "trainer/daemon", "trainer/cli", "stream/kafka", "store"):
        assert f"{package}/__init__.py" in names, package
    shipped = {
        str(path.relative_to(context))
        for name in PRODUCT
        for path in (context / name).rglob("*.py")
    }
    assert shipped <= names, f"modules left out of the wheel: {sorted(shipped - names)}"
