"""What the registry layer and the container images ship never imports what they leave out.

The layer build (``layers/isrflow/Makefile``, ``LAYER_EXCLUDED``) and the images
(``.dockerignore``) copy the ``isrflow`` package without the local runtime, the CLI, the simulator
and the operator tools. An AST scan of every shipped module (the package minus those, and
``functions/*/*.py``) fails on an import of a left-out package, at module level or inside a
function, by ``import``, ``from ... import`` (relative ones resolved) or ``importlib.import_module``
with a literal name: in a function it would raise ImportError on AWS the first time it runs.

The only exceptions are the function-level imports in :data:`ALLOWED`, each behind a branch that
only the left-out side reaches, with the reason; a module-level import is never allowed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "layers" / "isrflow"
PACKAGE = LIBRARY / "isrflow"
LAYER_MAKEFILE = LIBRARY / "Makefile"
DOCKERIGNORE = REPO / ".dockerignore"

#: What the layer and the images must leave out whatever else the Makefile adds.
ALWAYS_EXCLUDED = {"local", "cli", "simulate"}

#: (shipped module, left-out package) -> why its function-level import of that package never runs
#: on AWS.
ALLOWED: dict[tuple[str, str], str] = {
    ("isrflow/__init__.py", "client"): (
        "`from isrflow import Client` for notebooks and scripts; no function asks for it"
    ),
    ("isrflow/infra/queues.py", "local"): (
        "LocalSender/LocalVisibility serve sqlite:// queue URLs, which only the local runtime hands out"
    ),
    ("isrflow/infra/redrive.py", "local"): (
        "redrive_local (`isrflow registry redrive --repo`) reads a local repository's queue file; "
        "no function calls it"
    ),
}


@dataclass(frozen=True)
class BannedImport:
    path: str  # relative to the repository
    line: int
    target: str  # the imported module
    package: str  # the left-out package it is in
    lazy: bool  # inside a function


def layer_excluded(makefile: Path = LAYER_MAKEFILE) -> set[str]:
    """The subpackages the layer build leaves out (``LAYER_EXCLUDED := ...``)."""
    match = re.search(r"^LAYER_EXCLUDED\s*:?=\s*(.*)$", makefile.read_text(encoding="utf-8"), flags=re.M)
    assert match, f"{makefile}: no LAYER_EXCLUDED line"
    return set(match.group(1).split())


def docker_excluded(dockerignore: Path = DOCKERIGNORE) -> set[str]:
    """The subpackages .dockerignore leaves out of the images' build context."""
    prefix = "layers/isrflow/isrflow/"
    return {
        line.strip()[len(prefix) :].strip("/")
        for line in dockerignore.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith(prefix) and line.strip() != prefix
    }


def shipped_modules(excluded: set[str]) -> list[Path]:
    """The package's modules the layer ships, and the handlers' modules."""
    library = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in excluded]
    return sorted(library) + sorted((REPO / "functions").glob("*/*.py"))


def _module_name(path: Path) -> str:
    """The dotted name of a library module (``isrflow.infra.queues``); handlers are top-level."""
    try:
        parts = list(path.relative_to(LIBRARY).with_suffix("").parts)
    except ValueError:
        return path.stem
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module of ``from <node.module> import ...``, relative ones resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an import statement or ``import_module("...")`` call imports."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = _absolute(node, module, is_package)
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        arg = node.args[0]
        if name in ("import_module", "__import__") and isinstance(arg, ast.Constant):
            return [str(arg.value)]
    return []


def banned_imports(source: str, path: str, excluded: set[str]) -> list[BannedImport]:
    """Every import of ``isrflow.<excluded>`` in ``source`` (a module at ``path``, relative to the
    repository), with whether it sits inside a function."""
    file = REPO / path
    module = _module_name(file)
    is_package = file.name == "__init__.py"
    found: list[BannedImport] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for target in _imported(node, module, is_package):
            parts = target.split(".")
            if parts[0] == "isrflow" and len(parts) > 1 and parts[1] in excluded:
                found.append(BannedImport(path, getattr(node, "lineno", 0), target, parts[1], lazy))
                break
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def _allowed_key(imp: BannedImport) -> tuple[str, str]:
    """``imp``'s key in :data:`ALLOWED`: (module path under ``layers/isrflow``, left-out package)."""
    path = Path(imp.path)
    if path.is_relative_to("layers/isrflow"):
        path = path.relative_to("layers/isrflow")
    return str(path), imp.package


def problems(found: list[BannedImport]) -> list[str]:
    """What fails: module-level imports, and function-level ones not in :data:`ALLOWED`."""
    out = []
    for imp in found:
        if imp.lazy and _allowed_key(imp) in ALLOWED:
            continue
        where = "inside a function" if imp.lazy else "at module level"
        out.append(f"{imp.path}:{imp.line} imports {imp.target} {where}")
    return out


def test_the_layer_and_the_images_leave_out_the_same_packages():
    excluded = layer_excluded()
    assert excluded >= ALWAYS_EXCLUDED, f"the layer must leave out {sorted(ALWAYS_EXCLUDED - excluded)}"
    assert all((PACKAGE / name / "__init__.py").exists() for name in excluded), excluded
    assert docker_excluded() == excluded, "layers/isrflow/Makefile LAYER_EXCLUDED and .dockerignore differ"


def test_shipped_modules_do_not_import_what_is_left_out():
    excluded = layer_excluded()
    modules = shipped_modules(excluded)
    assert any(p.parts[-3:] == ("isrflow", "registry", "__init__.py") for p in modules)
    assert any(p.parent.parent == REPO / "functions" for p in modules)
    found = [
        imp
        for path in modules
        for imp in banned_imports(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)), excluded)
    ]
    bad = problems(found)
    assert not bad, "the registry layer and the images do not ship these:\n" + "\n".join(bad)
    used = {_allowed_key(imp) for imp in found if imp.lazy}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"ALLOWED lists imports that are gone (remove them): {stale}"


def test_the_scan_finds_every_kind_of_import():
    source = """
import isrflow.local.queue
from isrflow import cli
from isrflow.registry import Registry
import json

def f():
    from isrflow.simulate import simulate
    from ..local import runtime
    importlib.import_module("isrflow.local.records")
    return lambda: __import__("isrflow.cli.main")
"""
    found = banned_imports(source, "layers/isrflow/isrflow/process_visit/x.py", ALWAYS_EXCLUDED)
    assert [(i.line, i.target, i.lazy) for i in found] == [
        (2, "isrflow.local.queue", False),
        (3, "isrflow.cli", False),
        (8, "isrflow.simulate", True),
        (9, "isrflow.local", True),
        (10, "isrflow.local.records", True),
        (11, "isrflow.cli.main", True),
    ]
    assert len(problems(found)) == 6
    # an ALLOWED lazy import passes; the same import at module level does not
    allowed = banned_imports(
        "def f():\n    import isrflow.local.queue\n",
        "layers/isrflow/isrflow/infra/queues.py",
        ALWAYS_EXCLUDED,
    )
    assert allowed and not problems(allowed)
    module_level = banned_imports(
        "import isrflow.local.queue\n", "layers/isrflow/isrflow/infra/queues.py", ALWAYS_EXCLUDED
    )
    assert problems(module_level)


def test_the_makefile_and_dockerignore_parsers(tmp_path):
    makefile = tmp_path / "Makefile"
    makefile.write_text("HERE := x\nLAYER_EXCLUDED       := local cli\n")
    assert layer_excluded(makefile) == {"local", "cli"}
    ignore = tmp_path / ".dockerignore"
    ignore.write_text(
        "*\n!layers/isrflow/isrflow/\nlayers/isrflow/isrflow/local/\nlayers/isrflow/isrflow/ops/\n"
    )
    assert docker_excluded(ignore) == {"local", "ops"}
