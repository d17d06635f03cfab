"""The package's layout stays readable: no import cycle, no module past about 400 lines."""

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "src" / "skipinit"
MAX_LINES = 420  # "about 400": room for a docstring, not for a second concern


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package modules `path` imports anywhere: functions and `if TYPE_CHECKING:` blocks (type-only) included."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_modules(path, set(known)) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None (depth-first search with colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 10 and any(graph.values())  # the graph was read, not empty
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def part_of(module: str) -> str:
    """The part a module belongs to: `skipinit.claims` for `skipinit.claims.stats`, a top-level module itself."""
    return ".".join(module.split(".")[:2])


def test_the_packages_parts_have_no_import_cycle_between_them():
    """claims, report, engine, data, signal and the top-level modules: data flows one way between them too."""
    parts: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        parts.setdefault(part_of(module), set()).update(
            part_of(target) for target in targets if part_of(target) != part_of(module)
        )
    assert {"skipinit.claims", "skipinit.report", "skipinit.engine", "skipinit.models"} <= set(parts)
    cycle = find_cycle(parts)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_about_400_lines(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concern"
