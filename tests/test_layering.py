"""The layering the architecture doc states: a library module (`src/churnlens/*.py`) imports
neither a stage (`churnlens.stages`) nor the CLI; stages may import the library."""

from __future__ import annotations

import ast
from pathlib import Path

import churnlens

PACKAGE = Path(churnlens.__file__).parent
UPWARD = ("churnlens.stages", "churnlens.cli")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def upward_imports(path: Path) -> list[str]:
    return sorted(n for n in imported_modules(path)
                  if any(n == up or n.startswith(f"{up}.") for up in UPWARD))


def test_no_library_module_imports_a_stage_or_the_cli():
    library = sorted(p for p in PACKAGE.glob("*.py") if p.name not in ("cli.py", "__main__.py"))
    assert len(library) > 30
    offenders = {p.name: upward_imports(p) for p in library if upward_imports(p)}
    assert offenders == {}


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from churnlens.stages import validate\n"
                      "    import churnlens.cli\n")
    assert upward_imports(module) == ["churnlens.cli", "churnlens.stages",
                                      "churnlens.stages.validate"]
