"""The house's floors: every import of the project points down (or stays on its floor), and no
modules import each other in a circle. Read from the source (ast), every import, at any depth."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lowest first: a package may import its own floor and those below, never one above.
FLOORS = ["renda", "model", "training", "serving", "apps", "bench"]


def modules() -> dict[str, Path]:
    return {f"{path.parent.name}.{path.stem}": path for floor in FLOORS for path in sorted((ROOT / floor).glob("*.py"))
            if path.stem != "__init__"}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project's modules a file imports (`from apps import archive` counts as apps.archive)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def test_every_import_points_down():
    floor = {name: FLOORS.index(name.split(".")[0]) for name in modules()}
    upward = sorted(f"{a} imports {b}" for a, targets in graph().items() for b in targets if floor[b] > floor[a])
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    edges = graph()
    circles, seen, stack, on_stack = [], set(), [], set()

    def visit(node: str) -> None:  # depth-first; a back edge closes a circle
        seen.add(node)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target in on_stack:
                circles.append(" → ".join(stack[stack.index(target):] + [target]))
            elif target not in seen:
                visit(target)
        stack.pop()
        on_stack.discard(node)

    for node in sorted(edges):
        if node not in seen:
            visit(node)
    assert not circles, "\n".join(circles)


def test_the_floors_cover_every_package():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(FLOORS)
