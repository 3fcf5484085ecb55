"""The Dockerfile and its build context, checked without building: a small multi-stage
python:3.11-slim image running as a numeric non-root user with `switchboard` as its entry
point, and a context that carries everything `pip install .` needs, data files included."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_multi_stage_on_python_311_slim() -> None:
    args = dict(
        value.split("=", 1) for op, value in _instructions() if op == "ARG" and "=" in value
    )
    stages = _stages()
    assert len(stages) >= 2, "build stage + runtime stage"
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image
    runtime = stages[-1]
    copies = [v for op, v in runtime if op == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), "runtime copies only"
    assert not any(op == "RUN" and "pip install" in v for op, v in runtime)


def test_runs_as_a_numeric_non_root_user() -> None:
    args = dict(
        value.split("=", 1) for op, value in _instructions() if op == "ARG" and "=" in value
    )
    (user,) = [v for op, v in _stages()[-1] if op == "USER"]
    user = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user)
    uid = user.split(":")[0]
    # Kubernetes can verify runAsNonRoot only for a numeric user; the manifests use this UID.
    assert uid.isdigit() and int(uid) != 0, user
    for path in (REPO / "deploy" / "k8s" / "base").glob("*.yaml"):
        for match in re.findall(r"runAs(?:User|Group): (\d+)", path.read_text()):
            assert match == uid, path.name


def test_entry_point_is_the_switchboard_script() -> None:
    (entrypoint,) = [v for op, v in _stages()[-1] if op == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["switchboard"]
    assert "switchboard" in _pyproject()["project"]["scripts"]


def test_dependency_layer_stubs_every_package() -> None:
    """The dependency layer installs a stub of each top-level package of pyproject.toml."""
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in include}
    text = DOCKERFILE.read_text()
    for package in packages:
        assert f"{package}/__init__.py" in text, package


def _ignored(relative: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [pattern, pattern.removeprefix("**/")]
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, c) for p in prefixes for c in candidates):
            ignored = not negate
    return ignored


def test_build_context_has_what_pip_install_needs() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = ["pyproject.toml", "README.md"] + [p.rstrip("*") + "/__init__.py" for p in include]
    for path in needed:
        assert not _ignored(path, patterns), f".dockerignore drops {path}"
    for path in (".venv/bin/python", ".git/HEAD", ".env", "tests/__init__.py"):
        assert _ignored(path, patterns), f".dockerignore lets {path} in"


def test_package_data_reaches_the_image() -> None:
    """`pip install .` (what the image does) copies only .py files unless pyproject.toml
    declares the others as package data: every data file the code ships must be declared,
    or the simulator's scripts and schemas are missing in the container."""
    config = _pyproject()["tool"].get("setuptools", {})
    declared = config.get("package-data", {})
    include = config["packages"]["find"]["include"]
    roots = {p.rstrip("*").rstrip(".") for p in include}
    missing = []
    for root in sorted(roots):
        for path in sorted((REPO / root).rglob("*")):
            if (
                not path.is_file()
                or path.suffix in (".py", ".pyc")
                or "__pycache__" in path.parts
                or "tests" in path.relative_to(REPO).parts
            ):
                continue
            package_dir = path.parent
            while not (package_dir / "__init__.py").exists() and package_dir != REPO:
                package_dir = package_dir.parent
            package = ".".join(package_dir.relative_to(REPO).parts)
            relative = path.relative_to(package_dir).as_posix()
            globs = declared.get(package, []) + declared.get("*", [])
            if not any(fnmatch.fnmatch(relative, g) for g in globs):
                missing.append(f"{package}: {relative}")
    assert not missing, (
        "not declared in [tool.setuptools.package-data] of pyproject.toml, so not in the "
        "wheel or the image:\n  " + "\n  ".join(missing)
    )
