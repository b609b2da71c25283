"""python -m build makes an sdist and a wheel; the wheel, built again from the
sdist alone, installs in a fresh virtual environment and works there: the
round trips of tests/wheel_smoke.py (which make wheel and cibuildwheel run
on every wheel they build) and the command-line tool."""

import pathlib
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tests" / "wheel_smoke.py"


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
    for needed in (*sources, "python/cmemcache/client.py", "meson.build", "pyproject.toml",
                   "LICENSE", "README.md"):
        assert any(n.endswith("/" + needed) for n in names), needed
    src = next((tmp_path / "src").iterdir())
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)])
    wheels = list(dist.glob("cmemcache-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        info = {n.split("/", 1)[1]: n for n in whl.namelist() if ".dist-info/" in n}
        assert "licenses/LICENSE" in info, sorted(info)
        assert whl.read(info["licenses/LICENSE"]) == (ROOT / "LICENSE").read_bytes()
        meta = whl.read(info["METADATA"]).decode()
        assert "License-Expression: MIT" in meta and "License-File: LICENSE" in meta, meta[:800]

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", "--no-index", str(wheels[0])])
    # the smoke script refuses a cmemcache from anywhere but the venv's site-packages
    out = run([str(py), str(SMOKE), "--server", memcached.address], cwd=tmp_path).stdout
    assert "ok  Client.get_multi" in out and "ok  StringClient.cas" in out, out
    assert out.splitlines()[-1] == run([sys.executable, "-c",
                                        "import cmemcache; print(cmemcache.__version__)"]).stdout.strip()
    # the command-line tool comes with it
    tool = env / "bin" / "cmemcache"
    assert tool.exists()
    line = run([str(tool), "--servers", memcached.address, "version"]).stdout.strip()
    assert line.startswith(memcached.address + " 1."), line
    shutil.rmtree(env)
