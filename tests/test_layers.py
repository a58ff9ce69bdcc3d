"""The package's layers: import-linter's contracts hold (and break when a lower
layer imports a higher one), the front end loads neither Amaranth nor the
simulator, the formats load neither torch nor Amaranth, and no module imports
inside a function except the optional extras."""
from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.layers import ROOT, lint_imports, mirror, package_dirs

pytestmark = pytest.mark.unit

#: what may be imported inside a function: optional extras, loaded when used
#: (cocotb inside a simulation, plotting, the data extras, the NIR peer) ...
LAZY_EXTERNAL = ("cocotb", "cocotb_tools", "matplotlib", "h5py", "mlxtend",
                 "snntorch",   # snnTorch: the optional extra "peers" (spikeloop.nir.peers)
                 "norse",      # norse: the optional extra "bench" (spikeloop.nn.peers)
                 "scipy",      # the cochlea's membrane (extra "data", spikeloop data speech)
                 "lauscher",   # the cochlea compared (extra "data", spikeloop data cochlea-check)
                 "ray",        # a sweep on a Ray cluster (spikeloop explore --ray)
                 "optuna")     # a sweep's search (spikeloop explore --search optuna)
#: ... and the co-simulation backend, loaded by the dispatcher when a run asks for it
LAZY_INTERNAL = {("spikeloop.backends", "spikeloop.cosim.backend")}


def test_import_linter_contracts_are_kept():
    res = lint_imports()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contracts():
    exe = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory() as tmp:
        mirror(Path(tmp))
        layouts = Path(tmp, "spikeloop", "base", "layouts.py")
        layouts.write_text(layouts.read_text() + "\nimport spikeloop.backends  # noqa\n")
        res = subprocess.run([str(exe), "--no-cache"], cwd=tmp, text=True, capture_output=True,
                             env={"PYTHONPATH": tmp, "PATH": ""})
    assert res.returncode != 0
    assert "BROKEN" in res.stdout and "spikeloop.base.layouts -> spikeloop.backends" in res.stdout


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return set(out.split())


def test_training_loads_neither_amaranth_nor_the_simulator():
    loaded = _loaded_after("import spikeloop.training.train, spikeloop.experiments.mismatch")
    for mod in ("amaranth", "cocotb", "cocotb_tools", "spikeloop.rtl", "spikeloop.cosim"):
        assert mod not in loaded, f"importing the training loads {mod}"


def test_the_formats_load_neither_torch_nor_amaranth():
    names = [f.stem for f in package_dirs()["spikeloop.base"].glob("*.py")
             if f.stem != "__init__"]
    loaded = _loaded_after("; ".join(f"import spikeloop.base.{n}" for n in names))
    assert {"spikeloop.base.config", "spikeloop.base.isa"} <= loaded
    for mod in ("torch", "amaranth", "numba", "cocotb"):
        assert mod not in loaded, f"importing spikeloop.base loads {mod}"


def _imports_inside_functions():
    for pkg, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            tree = ast.parse(path.read_text())
            module = pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"
            for fn in ast.walk(tree):
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom):
                        names = [node.module or ""]
                    elif isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    else:
                        continue
                    for name in names:
                        if name.split(".")[0] in LAZY_EXTERNAL:
                            continue
                        if (module, name) in LAZY_INTERNAL:
                            continue
                        yield f"{path.relative_to(ROOT)}:{node.lineno}: {name}"


def test_no_imports_inside_functions_but_the_optional_extras():
    found = list(_imports_inside_functions())
    assert not found, "imports inside functions:\n" + "\n".join(found)
