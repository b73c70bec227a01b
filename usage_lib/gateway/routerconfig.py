"""The gateway's model list, read from its LiteLLM-style router configuration (SPEC §1)."""

from __future__ import annotations

from pathlib import Path

import yaml

from usage_lib.errors import UsageError


def parse_router_config(text: str, source: str = "router config") -> tuple[str, ...]:
    """Return the configured `model_name`s in configuration order, each once.

    LiteLLM lists a model name several times when it balances over several
    deployments; the dashboard shows it once, where it first appears.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{source}: not valid YAML{where}") from None
    if not isinstance(data, dict) or "model_list" not in data:
        raise UsageError(f"{source}: no top-level 'model_list'")
    entries = data["model_list"]
    if not isinstance(entries, list):
        raise UsageError(f"{source}: 'model_list' must be a list")
    names: list[str] = []
    for position, entry in enumerate(entries, start=1):
        name = entry.get("model_name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise UsageError(f"{source}: model_list entry {position} has no 'model_name'")
        if name not in names:
            names.append(name)
    return tuple(names)


def load_router_config(path: str | Path) -> tuple[str, ...]:
    """Read a router configuration file; see `parse_router_config`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"router config not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"router config unreadable: {path}: {exc.strerror}") from None
    return parse_router_config(text, source=str(path))
