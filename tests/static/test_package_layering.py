"""Who may import whom (docs/architecture.md, "Packages"), kept true by an AST scan of every module.

Each package of ``layers/isrflow/isrflow`` is a *unit* with a layer number (:data:`LAYERS`, the same
numbers as the page's table). A module-level import may point to the same layer or a lower one;
an import inside a function (or under ``TYPE_CHECKING``) may point anywhere. With that rule no
import cycle between units can form when modules load, so the units can be read, tested and
moved bottom-up. A new package fails :func:`test_every_package_has_a_layer` until it is placed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "isrflow"
PACKAGE = LIBRARY / "isrflow"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

#: unit -> layer. Subpackages listed here are units of their own; any other subpackage belongs
#: to its top-level package.
LAYERS: dict[str, int] = {
    "isrflow": 0,  # the root: only a lazy Client and __version__
    "isrflow.model": 0,
    "isrflow.local.asl": 0,
    "isrflow.camera": 1,
    "isrflow.io": 2,
    "isrflow.isr": 3,
    "isrflow.registry": 3,
    "isrflow.registry.migrations": 3,
    "isrflow.infra": 3,
    "isrflow.calibration": 4,
    "isrflow.simulate": 4,
    "isrflow.render": 4,
    "isrflow.process_visit": 5,
    "isrflow.build_calibration": 5,
    "isrflow.prompt": 5,
    "isrflow.local": 6,
    "isrflow.local.containers": 6,
    "isrflow.local.sam_template": 6,
    "isrflow.ops": 6,
    "isrflow.client": 7,
    "isrflow.cli": 8,
}

#: The subpackages that are units of their own, longest first (so the innermost wins).
SUBUNITS = sorted((u for u in LAYERS if u.count(".") >= 2), key=len, reverse=True)


def unit_of(module: str) -> str:
    for sub in SUBUNITS:
        if module == sub or module.startswith(sub + "."):
            return sub
    parts = module.split(".")
    return ".".join(parts[:2])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIBRARY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def module_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, imported module or module.name) of every isrflow import that runs when the module loads."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.lineno, child.module))
                found.extend((child.lineno, f"{child.module}.{a.name}") for a in child.names)
            visit(child)

    visit(tree)
    return [(line, name) for line, name in found if name == "isrflow" or name.startswith("isrflow.")]


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """``isrflow.io.formats.SAT`` -> ``isrflow.io.formats``: the longest prefix that is a module."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def test_every_package_has_a_layer():
    units = {unit_of(m) for m in _modules()}
    missing = sorted(units - set(LAYERS))
    assert not missing, f"place these packages in LAYERS and in docs/architecture.md: {missing}"
    gone = sorted(set(LAYERS) - units)
    assert not gone, f"LAYERS names packages that no longer exist: {gone}"


def test_module_level_imports_point_to_the_same_layer_or_lower():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        source = unit_of(name)
        for line, imported in module_level_imports(ast.parse(path.read_text(), str(path))):
            target = unit_of(_resolve(imported, modules))
            if target != source and LAYERS[target] > LAYERS[source]:
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} {source} (layer {LAYERS[source]}) imports "
                    f"{imported} ({target}, layer {LAYERS[target]}) at module level"
                )
    assert not upward, "upward imports (move the import into the function that needs it):\n" + "\n".join(
        upward
    )


def test_no_cycle_between_units_at_module_level():
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = unit_of(name)
        for _, imported in module_level_imports(ast.parse(path.read_text(), str(path))):
            target = unit_of(_resolve(imported, modules))
            if target != source:
                edges.setdefault(source, set()).add(target)
    cycles = sorted(
        f"{a} <-> {b}" for a, targets in edges.items() for b in targets if a < b and a in edges.get(b, ())
    )
    assert not cycles, f"units importing each other at module level: {cycles}"


def test_the_local_asl_interpreter_imports_only_the_standard_library():
    """It is tested, benchmarked and cross-checked against moto on its own."""
    modules = _modules()
    outside = [
        f"{name}: {imported}"
        for name, path in modules.items()
        if unit_of(name) == "isrflow.local.asl"
        for _, imported in module_level_imports(ast.parse(path.read_text()))
        if unit_of(_resolve(imported, modules)) != "isrflow.local.asl"
    ]
    assert not outside, outside


def test_the_architecture_page_states_the_same_layers():
    """Every row of the page's package table gives its package's layer (a subpackage: its unit's)."""
    rows = re.findall(r"^\| `(isrflow[\w.]*)` \| (\d+) ", ARCHITECTURE.read_text(), re.M)
    stated = {package: int(layer) for package, layer in rows}
    assert stated, "docs/architecture.md has no package table"
    differ = {p: (layer, LAYERS[unit_of(p)]) for p, layer in stated.items() if layer != LAYERS[unit_of(p)]}
    assert not differ, f"docs/architecture.md's layer (page, test) differs: {differ}"
    missing = sorted(set(LAYERS) - set(stated) - {"isrflow"})
    assert not missing, f"docs/architecture.md's package table lacks: {missing}"


def test_the_scan_sees_module_level_and_skips_lazy_imports():
    tree = ast.parse(
        "import isrflow.io.formats\n"
        "from isrflow.model import errors\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from isrflow.cli import main\n"
        "def f():\n    from isrflow.ops import status\n"
    )
    names = [n for _, n in module_level_imports(tree)]
    assert names == ["isrflow.io.formats", "isrflow.model", "isrflow.model.errors"]
    assert unit_of("isrflow.local.asl.history") == "isrflow.local.asl"
    assert unit_of("isrflow.local.queue") == "isrflow.local"
    assert unit_of("isrflow.registry.migrations.env") == "isrflow.registry.migrations"
