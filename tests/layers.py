"""The package's layers, checked: import-linter's contracts (pyproject.toml,
``[tool.importlinter]``) over the package as installed.

The package's subpackages rtl, model and cosim live in top-level folders of
the repository (pyproject.toml's ``package-dir``), which import-linter cannot
follow; :func:`mirror` copies the sources into the installed layout in a
temporary folder, where the contracts are checked.

    python -m tests.layers          # what `make lint` runs
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_dirs() -> dict[str, Path]:
    """Every package of pyproject.toml and the folder its sources are in."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setup["package-dir"]
    out = {}
    for pkg in setup["packages"]:
        if pkg in mapping:
            out[pkg] = ROOT / mapping[pkg]
        else:
            parent, _, leaf = pkg.rpartition(".")
            out[pkg] = (out[parent] / leaf) if parent in out else ROOT / pkg.replace(".", "/")
    return out


def mirror(dest: Path) -> Path:
    """The package's ``.py`` files under ``dest`` in the installed layout."""
    for pkg, src in package_dirs().items():
        target = dest.joinpath(*pkg.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            shutil.copy2(f, target / f.name)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def lint_imports() -> subprocess.CompletedProcess:
    """Run ``lint-imports`` on a mirror of the package; its output and status."""
    exe = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="spikeloop-layers-") as tmp:
        mirror(Path(tmp))
        env = {**os.environ, "PYTHONPATH": tmp}
        return subprocess.run([str(exe), "--no-cache"], cwd=tmp, env=env, text=True,
                              capture_output=True)


def main() -> int:
    res = lint_imports()
    print(res.stdout, end="")
    print(res.stderr, end="", file=sys.stderr)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
