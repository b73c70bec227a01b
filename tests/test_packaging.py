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
