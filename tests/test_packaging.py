"""pip (pyproject.toml) and conda (environment.yml) install the same runtime dependencies."""

from __future__ import annotations

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
    for info in pkgutil.iter_modules(usage_lib.__path__):
        module = importlib.import_module(f"usage_lib.{info.name}")
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
