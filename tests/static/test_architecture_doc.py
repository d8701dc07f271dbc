"""docs/architecture.md stays true to the code.

- Its package table lists exactly the packages (directories with ``__init__.py``) under
  ``layers/isrflow/isrflow/``: a new package, or a removed one, fails here until the page says so.
- Its error tree names every class of ``isrflow/model/errors.py`` and every ``IsrflowError`` subclass
  defined elsewhere in the package, and no class that no longer exists.
- ``docs/architecture.svg`` is what ``docs/make_diagram.py`` generates from the current
  ``template.yaml`` and ``statemachines/*.asl.json``.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "isrflow" / "isrflow"
DOC = ROOT / "docs" / "architecture.md"


def _section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section (up to the next ``## `` heading)."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/architecture.md has no '## {heading}' section"
    return match.group(1)


def doc_packages(text: str) -> set[str]:
    """Packages named in the first column of the Packages table: ``| `isrflow.x.y` | ...``."""
    body = _section(text, "Packages")
    return set(re.findall(r"^\|\s*`isrflow\.([a-z_][a-z0-9_.]*)`\s*\|", body, flags=re.M))


def code_packages(root: Path = PACKAGE) -> set[str]:
    """Dotted names (without ``isrflow.``) of every package below the isrflow package."""
    return {
        ".".join(init.parent.relative_to(root).parts)
        for init in root.rglob("__init__.py")
        if init.parent != root and "__pycache__" not in init.parts
    }


def doc_error_tree(text: str) -> set[str]:
    """Class names in the error tree (the ```text block of '### The tree')."""
    body = _section(text, "Error taxonomy")
    match = re.search(r"### The tree.*?```text\n(.*?)```", body, flags=re.S)
    assert match, "the Error taxonomy section has no '### The tree' ```text block"
    return set(re.findall(r"\b([A-Z][A-Za-z0-9]*(?:Error|Exception))\b", match.group(1)))


def _classes(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = [
                b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else ""
                for b in node.bases
            ]
            out.append((node.name, bases))
    return out


def errors_py_classes(root: Path = PACKAGE) -> set[str]:
    return {name for name, _ in _classes(root / "model" / "errors.py")}


def isrflow_error_classes(root: Path = PACKAGE) -> set[str]:
    """Every class in the package deriving (by base-class name) from ``IsrflowError``."""
    found = {"IsrflowError"}
    defined = [c for path in sorted(root.rglob("*.py")) for c in _classes(path)]
    changed = True
    while changed:
        changed = False
        for name, bases in defined:
            if name not in found and any(b in found for b in bases):
                found.add(name)
                changed = True
    return found


def test_package_table_matches_the_code():
    text = DOC.read_text(encoding="utf-8")
    listed, actual = doc_packages(text), code_packages()
    assert listed, "no packages found in the Packages table"
    assert not actual - listed, f"packages missing from docs/architecture.md: {sorted(actual - listed)}"
    gone = sorted(listed - actual)
    assert not gone, f"docs/architecture.md lists packages that do not exist: {gone}"


def test_error_tree_names_every_error_class():
    text = DOC.read_text(encoding="utf-8")
    tree = doc_error_tree(text)
    in_errors_py = errors_py_classes()
    assert "IsrflowError" in in_errors_py
    missing = in_errors_py - tree
    assert not missing, f"errors.py classes missing from the error tree: {sorted(missing)}"
    elsewhere = isrflow_error_classes() - tree
    assert not elsewhere, f"IsrflowError subclasses missing from the error tree: {sorted(elsewhere)}"
    stale = tree - isrflow_error_classes()
    assert not stale, f"the error tree names classes that are not IsrflowErrors (any more): {sorted(stale)}"


def test_checks_can_fail(tmp_path):
    """The parsers see a change: a package added on disk, a class dropped from the tree."""
    fake = tmp_path / "isrflow"
    (fake / "newpkg").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "newpkg" / "__init__.py").write_text("")
    assert code_packages(fake) == {"newpkg"}
    text = DOC.read_text(encoding="utf-8")
    assert "newpkg" not in doc_packages(text)
    trimmed = text.replace("│   ├── QueryFieldError\n", "")
    assert "QueryFieldError" in doc_error_tree(text)
    assert "QueryFieldError" not in doc_error_tree(trimmed)


def test_diagram_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_diagram.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr or result.stdout
