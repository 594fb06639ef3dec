"""The package's modules import each other without a cycle (issue 18).

Walks every module's imports with `ast`: imports inside functions count (a cycle hidden in a function still
couples the two modules), `if TYPE_CHECKING:` blocks do not (they never run). A package's `__init__` is a
module of its own; importing `pkg.mod` is an edge to `pkg.mod`, not to `pkg`.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = "nilus_stripe_assets"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod when it is one
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in known else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(files)
    return {name: _imports(ast.parse(path.read_text()), name, path.name == "__init__.py", known) - {name}
            for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]):
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40  # the walk found the package's modules
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_walk_sees_a_cycle_inside_a_function_and_ignores_type_checking():
    known = {"p.a", "p.b"}
    inside = ast.parse("def f():\n    from . import b\n")
    assert _imports(inside, "p.a", False, known) == {"p.b"}
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import X\n")
    assert _imports(guarded, "p.a", False, known) == set()
    assert find_cycle({"p.a": {"p.b"}, "p.b": {"p.a"}}) == ["p.a", "p.b", "p.a"]


def test_the_package_root_keeps_the_public_face_only():
    modules = [p for p in ROOT.glob("*.py")]
    assert len(modules) <= 10, sorted(p.name for p in modules)


@pytest.mark.parametrize("name", ["build_stripe_assets", "StripeResource", "WarehouseResource", "StripeTranslator",
                                  "StripePipelineComponent", "StripeDuckDBIOManager"])
def test_the_public_names_resolve_from_the_package(name):
    import nilus_stripe_assets

    assert getattr(nilus_stripe_assets, name).__name__ == name


def test_earlier_public_paths_still_resolve():
    """YAML and dagster.yaml written against the adapter's earlier name (`wiring`) keep loading."""
    from nilus_stripe_assets.dagster_adapter.component import StripePipelineComponent
    from nilus_stripe_assets.dagster_adapter.console import FailuresInOneLine
    from nilus_stripe_assets.wiring.component import StripePipelineComponent as old_component
    from nilus_stripe_assets.wiring.console import FailuresInOneLine as old_handler

    assert old_component is StripePipelineComponent and old_handler is FailuresInOneLine
