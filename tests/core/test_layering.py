"""The architecture's rules, checked on the source: no import cycles inside the SDK, the pure core
imports nothing with I/O, and the CLI uses only the SDK's public names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "deltaglider_async"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Project modules imported at module level (``TYPE_CHECKING`` blocks are not imports)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SDK.rglob("*.py")}
    return {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}


def test_no_import_cycles_in_the_sdk() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodules is not a cycle
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_pure_core_does_no_io() -> None:
    forbidden = {"aioboto3", "aiobotocore", "botocore", "aiohttp", "anyio", "os", "socket"}
    allowed = ("deltaglider_async._core", "deltaglider_async._exceptions")
    for path in (SDK / "_core").glob("*.py"):
        names = _imports(path)
        assert not {name.split(".")[0] for name in names} & forbidden, path.name
        project = {n for n in names if n.startswith("deltaglider_async")}
        assert all(n.startswith(allowed) for n in project), (path.name, project)


def test_the_cli_uses_only_public_sdk_names() -> None:
    for path in (ROOT / "cli").rglob("*.py"):
        private = {
            n
            for n in _imports(path)
            if n.startswith("deltaglider_async._") and not n.endswith("__")  # __version__ is public
        }
        assert not private, (path.relative_to(ROOT), private)
