"""The package's shape: pip (pyproject.toml) and conda (environment.yml) install the same
runtime dependencies; its layers import only downward; every annotation resolves."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def requirement_name(spec: str) -> str:
    """'psycopg[binary]>=3.1' -> 'psycopg'."""
    return re.split(r"[\[<>=!~ ]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_pip_and_conda_list_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {requirement_name(spec) for spec in project["dependencies"]}
    pip_names |= {requirement_name(spec) for spec in project["optional-dependencies"]["test"]}
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda_names = {requirement_name(spec) for spec in conda if isinstance(spec, str)}
    conda_names -= {"python", "pip", "nodejs"}
    assert pip_names == conda_names


def test_minimum_versions_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {requirement_name(s): s.split(">=")[-1] for s in project["dependencies"] if ">=" in s}
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda_pins = {requirement_name(s): s.split(">=")[-1] for s in conda if isinstance(s, str) and ">=" in s}
    for name, version in pins.items():
        assert conda_pins.get(name) == version, name


def test_every_annotation_in_the_package_names_something():
    """`from __future__ import annotations` keeps an annotation naming a deleted or
    misspelled type from failing at import; resolving every one of them does not."""
    import importlib
    import inspect
    import pkgutil
    import typing

    import usage_lib

    unresolved = []
    for info in pkgutil.walk_packages(usage_lib.__path__, "usage_lib."):
        module = importlib.import_module(info.name)
        for name, member in vars(module).items():
            if getattr(member, "__module__", None) != module.__name__:
                continue
            functions = [member] if inspect.isfunction(member) else []
            if inspect.isclass(member):
                functions = [member] + [f for f in vars(member).values() if inspect.isfunction(f)]
            for function in functions:
                try:
                    typing.get_type_hints(function)
                except NameError as exc:
                    unresolved.append(f"{module.__name__}.{name}: {exc}")
    assert unresolved == []


#: The package's layers, lowest first: a module may import its own layer and those below.
LAYERS = ("errors", "gateway", "core", "history", "demo", "settings", "render", "ui", "serving", "snapshot", "cli")


def layer_of(module: str) -> str:
    """'usage_lib.core.spans' -> 'core'."""
    return module.split(".")[1]


def package_imports() -> dict[str, list[tuple[str, bool]]]:
    """Module -> the usage_lib modules it imports, each with whether the import sits
    inside a function. Read from the source, so nothing is executed."""
    imports: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted((ROOT / "usage_lib").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text(), str(path))
        found = []
        for function in [None, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]:
            body = tree.body if function is None else function.body
            for node in (n for statement in body for n in ast.walk(statement)):
                if function is None and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                names = []
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("usage_lib"):
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names if alias.name.startswith("usage_lib")]
                found += [(name, function is not None) for name in names if name.count(".") >= 1]
        imports[module] = found
    return imports


def test_the_layers_only_import_downward():
    upward = []
    for module, imported in package_imports().items():
        if module == "usage_lib" or module.endswith("voila_config.voila"):
            continue  # the package's front door re-exports; Voila's config file is read by Voila
        for name, _inside in imported:
            if name.split(".")[1] not in LAYERS:
                continue  # `from usage_lib.x import name`: the module itself is checked
            if LAYERS.index(layer_of(name)) > LAYERS.index(layer_of(module)):
                upward.append(f"{module} imports {name}")
    assert upward == []


def test_the_command_line_is_imported_by_nothing():
    assert [m for m, imported in package_imports().items() if any(n.startswith("usage_lib.cli") for n, _ in imported)] == []


def test_no_package_import_hides_inside_a_function():
    assert [f"{m}: {n}" for m, imported in package_imports().items() for n, inside in imported if inside] == []


def test_no_two_modules_import_each_other_in_a_circle():
    modules = package_imports()
    graph = {m: {n for n, _ in imported if n in modules and n != m} for m, imported in modules.items()}
    visiting, done, circles = set(), set(), []

    def visit(module: str, path: list[str]) -> None:
        if module in visiting:
            circles.append(" -> ".join(path[path.index(module):] + [module]))
            return
        if module in done:
            return
        visiting.add(module)
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert circles == []
