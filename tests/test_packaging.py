"""The installed package holds every subpackage of the tree.

An editable install (``make setup``) finds subpackages that pyproject.toml does
not list; a wheel (``pip install .``) does not: ``spikeloop.backends`` was
missing from the list until a wheel was installed on a GPU machine."""
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = tool["package-dir"]
    listed = set(tool["packages"])
    found = set()
    for name, folder in dirs.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    # a folder mapped by a parent's entry and by its own gives the same name twice
    missing = sorted(found - listed)
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}"
    assert not sorted(listed - found), f"listed but not found: {sorted(listed - found)}"
