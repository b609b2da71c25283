"""python -m build makes an sdist and a wheel; the wheel, built again from the
sdist alone, installs in a fresh virtual environment and works there."""

import pathlib
import shutil
import subprocess
import sys
import tarfile
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SMOKE = """
import sys, cmemcache
from cmemcache import StringClient
assert cmemcache.__file__.startswith(sys.prefix), cmemcache.__file__
c = cmemcache.Client([sys.argv[1]])
assert c.set("pkg", {"a": 1}) is True and c.get("pkg") == {"a": 1}
s = StringClient(sys.argv[1])
assert s.set(b"raw", b"v") is True and s.get(b"raw") == b"v"
print(cmemcache.__version__)
"""


def run(args, **kw):
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.mark.hang_timeout(900)
def test_sdist_and_wheel_install_in_a_fresh_venv(tmp_path, memcached):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    # the sdist, then the wheel from the unpacked sdist: what pip does from PyPI
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(ROOT)])
    sdists = list(dist.glob("cmemcache-*.tar.gz"))
    assert len(sdists) == 1
    with tarfile.open(sdists[0]) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "src", filter="data")
    sources = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "ext").glob("*.[ch]"))]
    assert "ext/engine.c" in sources
    for needed in sources + ["python/cmemcache/client.py", "meson.build", "pyproject.toml"]:
        assert any(n.endswith(needed) for n in names), needed
    src = next((tmp_path / "src").iterdir())
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)])
    wheels = list(dist.glob("cmemcache-*.whl"))
    assert len(wheels) == 1

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", "--no-index", str(wheels[0])])
    out = run([str(py), "-c", SMOKE, memcached.address], cwd=tmp_path).stdout
    assert out.strip() == run([sys.executable, "-c",
                               "import cmemcache; print(cmemcache.__version__)"]).stdout.strip()
    # the command-line tool comes with it
    tool = env / "bin" / "cmemcache"
    assert tool.exists()
    line = run([str(tool), "--servers", memcached.address, "version"]).stdout.strip()
    assert line.startswith(memcached.address + " 1."), line
    shutil.rmtree(env)
