"""No module reaches into another module's underscore names (docs/architecture.md, "Seams").

An underscore name is its module's own business: whoever needs it from outside gets a public
name instead, so a module can be reshaped without reading every other one first.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "portal", "members", "accounts", "tasks", "monitor")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def private_names_used_from_elsewhere(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    module_aliases: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith(PACKAGES) or node.module == _own_module(path):
                continue
            for alias in node.names:
                if _is_private(alias.name):
                    found.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}"
                    )
                else:
                    module_aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGES):
                    module_aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
            and _is_private(node.attr)
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def project_modules() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def test_the_check_sees_every_package():
    modules = project_modules()
    assert len(modules) > 100
    assert {path.relative_to(ROOT).parts[0] for path in modules} == set(PACKAGES)


def test_no_module_uses_another_modules_underscore_names():
    offenders = [
        hit for path in project_modules() for hit in private_names_used_from_elsewhere(path)
    ]
    assert offenders == []
