"""Imports run one way (DESIGN.md section 1): each layer imports only the layers below it.

Parsed from the source with ``ast`` (no import side effects), so a new upward import fails
here before it becomes a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("mls", "dht", "api", "node")

# package prefix -> the prefixes (of ours) it may import; checked longest prefix first.
ALLOWED: dict[str, tuple[str, ...]] = {
    "mls": ("mls",),
    "node.core": ("node.core",),
    "dht": ("dht", "node.core"),
    "node.transport": ("node.transport", "node.core"),
    "node.channels": ("node.channels", "node.core", "mls"),
    "node.network": ("node.network", "node.core"),
    "node.storage": ("node.storage", "node.core", "node.channels", "node.network", "dht", "mls"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from node import mesh" imports the module node.mesh
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in OURS}


def _rule_for(module: str) -> tuple[str, tuple[str, ...]] | None:
    for prefix in sorted(ALLOWED, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, ALLOWED[prefix]
    return None


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    # "node" alone (from "from node import x") is a namespace step, judged by x.
    return name == "node" or any(name == p or name.startswith(p + ".") for p in prefixes)


SOURCES = sorted(p for pkg in OURS for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path: Path) -> None:
    module = _module_name(path)
    rule = _rule_for(module)
    if rule is None:
        return  # the shell (node.daemon, node.cli, ...) and api may import any layer
    layer, allowed = rule
    bad = sorted(name for name in _imports(path) if not _within(name, allowed))
    assert not bad, f"{module} ({layer}) imports {bad}; allowed: {allowed}"


def test_the_rule_sees_an_upward_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from node.daemon import Node\nimport dht.service\n")
    assert _imports(sample) == {"node.daemon", "node.daemon.Node", "dht.service"}
    assert not _within("node.daemon", ALLOWED["node.core"])
