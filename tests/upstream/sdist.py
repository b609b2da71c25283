"""Files from a package's source distribution on PyPI, downloaded once with
pip into ``build/upstream/`` and kept there for the next runs."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "upstream"

#: marks a completely extracted copy
_DONE = ".complete"


def fetch(name: str, members: tuple[str, ...], version: str | None = None) -> Path:
    """The directory holding ``members`` (paths inside the sdist, files or
    directories) of ``name``'s sdist at ``version`` (default: the installed
    version).  Downloaded with ``pip download`` on first use; later calls
    use the copy in ``build/upstream/<name>-<version>/``."""
    version = version or installed_version(name)
    target = CACHE / f"{name}-{version}"

    def present() -> bool:
        return (target / _DONE).exists() and all((target / m).exists() for m in members)

    if present():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download at a time
        if not present():
            _download(name, version, members, target)
    return target


def _download(name: str, version: str, members: tuple[str, ...], target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".download-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", tmp, f"{name}=={version}"],
            capture_output=True, text=True, timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip download {name}=={version} failed:\n{proc.stdout}{proc.stderr}")
        archives = [p for p in Path(tmp).iterdir() if p.name.endswith(".tar.gz")]
        if len(archives) != 1:
            raise RuntimeError(f"pip download {name}=={version} gave {os.listdir(tmp)}")
        out = Path(tmp) / "out"
        with tarfile.open(archives[0]) as tar:
            chosen = []
            for info in tar.getmembers():
                inner = info.name.split("/", 1)[1] if "/" in info.name else ""
                if any(inner == m or inner.startswith(m.rstrip("/") + "/") for m in members):
                    info.name = inner
                    chosen.append(info)
            missing = [m for m in members
                       if not any(i.name == m or i.name.startswith(m.rstrip("/") + "/") for i in chosen)]
            if missing:
                raise RuntimeError(f"{archives[0].name} has no {missing}")
            if hasattr(tarfile, "data_filter"):  # 3.11.4 and later
                tar.extractall(out, members=chosen, filter="data")
            else:
                tar.extractall(out, members=chosen)
        (out / _DONE).write_text(f"{archives[0].name}\n")
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
