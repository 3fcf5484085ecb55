"""The layers: each service is its own package, deployed and scaled on its own, so no service
imports another; what two services use lives in `shared/`, which imports no service."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def crossings(folder: Path, allowed_prefix: str | None) -> list[str]:
    """Imports of `services.*` from files under `folder`, except of `allowed_prefix`."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for module in imported_modules(path):
            if not module.startswith("services."):
                continue
            if allowed_prefix is not None and (
                module == allowed_prefix or module.startswith(allowed_prefix + ".")
            ):
                continue
            found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


def test_no_service_imports_another() -> None:
    services = [p for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists()]
    assert len(services) >= 5
    found = [line for s in services for line in crossings(s, f"services.{s.name}")]
    assert found == [], "move what two services use into shared/:\n" + "\n".join(found)


def test_shared_imports_no_service() -> None:
    found = crossings(ROOT / "shared", None)
    assert found == [], "\n".join(found)


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    """Not vacuous: a file reaching into another service is found."""
    module = tmp_path / "bad.py"
    module.write_text("from services.acceptor.main import Acceptor\nimport os\n")
    assert list(imported_modules(module)) == ["services.acceptor.main", "os"]
