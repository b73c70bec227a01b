"""The gateway's model list, read from its LiteLLM-style router configuration (SPEC §1),
the custom per-model prices that LiteLLM's format lets it carry (issue 14), and the
per-model weights of the gateway's request rate limit (issue 15)."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from usage_lib.errors import UsageError

#: (model, input price, output price), both per million tokens, in USD.
RouterPrice = tuple[str, Decimal, Decimal]

#: LiteLLM's custom-pricing keys, read from `model_info` first, then `litellm_params`.
COST_KEYS = ("input_cost_per_token", "output_cost_per_token")

MILLION = Decimal(1_000_000)

#: The `model_info` key by which a request of a model counts 1/multiplier towards the
#: gateway's requests-per-minute limit (default 1).
MULTIPLIER_KEY = "request_limit_multiplier"


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in `text`; a one-line UsageError naming `source` (and the line)
    when it is not valid YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{source}: not valid YAML{where}") from None


def _model_list(text: str, source: str) -> list[tuple[int, str, dict[str, Any]]]:
    """The `model_list` entries as (position from 1, model_name, entry)."""
    data = parse_yaml(text, source)
    if not isinstance(data, dict) or "model_list" not in data:
        raise UsageError(f"{source}: no top-level 'model_list'")
    entries = data["model_list"]
    if not isinstance(entries, list):
        raise UsageError(f"{source}: 'model_list' must be a list")
    named = []
    for position, entry in enumerate(entries, start=1):
        name = entry.get("model_name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise UsageError(f"{source}: model_list entry {position} has no 'model_name'")
        named.append((position, name, entry))
    return named


def parse_router_config(text: str, source: str = "router config") -> tuple[str, ...]:
    """Return the configured `model_name`s in configuration order, each once.

    LiteLLM lists a model name several times when it balances over several
    deployments; the dashboard shows it once, where it first appears.
    """
    return tuple(dict.fromkeys(name for _, name, _ in _model_list(text, source)))


def parse_amount(value: object, where: str, key: str) -> Decimal:
    """A non-negative number read exactly from YAML or CSV; a one-line UsageError
    `<where>: <key> is ...` otherwise.

    `Decimal(str(value))` keeps 3e-06 exact whether YAML read it as a float or (without
    a dot, as PyYAML does) as the string "3e-06".
    """
    number = None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            pass
    if number is None or not number.is_finite():
        raise UsageError(f"{where}: {key} is not a number: {value!r}")
    if number < 0:
        raise UsageError(f"{where}: {key} is negative: {value!r}")
    return number


def plain(number: Decimal) -> Decimal:
    """`number` without trailing zeros and without an exponent (3.000000 -> 3, 1E+1 -> 10),
    so that one price always reads the same."""
    number = number.normalize()
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number


def _entry_costs(entry: dict[str, Any], where: str) -> dict[str, Decimal]:
    """The cost keys this entry sets, as prices per million (model_info wins per key)."""
    sections = [entry.get("model_info"), entry.get("litellm_params")]
    costs: dict[str, Decimal] = {}
    for section in reversed([s for s in sections if isinstance(s, dict)]):
        for key in COST_KEYS:
            if section.get(key) is not None:
                costs[key] = plain(parse_amount(section[key], where, key) * MILLION)
    return costs


def parse_router_prices(
    text: str, source: str = "router config"
) -> tuple[tuple[RouterPrice, ...], tuple[tuple[str, str], ...]]:
    """The per-model prices the router config sets, and why some models have none.

    Returns (prices in configuration order, notices as (model, one-line text)). A model
    gets a price only when every one of its deployments sets both costs to the same
    values: a model with a partial price, or with prices differing between deployments
    (or set on some only), is left unpriced (never guessed free) with a notice. A model
    with no cost keys at all is simply unpriced.
    """
    deployments_of: dict[str, list[tuple[int, dict[str, Decimal]]]] = {}
    for position, name, entry in _model_list(text, source):
        where = f"{source}: model_list entry {position} ({name})"
        deployments_of.setdefault(name, []).append((position, _entry_costs(entry, where)))
    prices: list[RouterPrice] = []
    notices: list[tuple[str, str]] = []
    for name, deployments in deployments_of.items():
        entries = ", ".join(str(position) for position, _ in deployments)
        partial = [p for p, costs in deployments if len(costs) == 1]
        distinct = {tuple(costs[k] for k in COST_KEYS) for _, costs in deployments if len(costs) == 2}
        if not distinct and not partial:
            continue
        if partial:
            why = f"model_list entry {partial[0]} sets only one of {' and '.join(COST_KEYS)}"
        elif len(distinct) > 1:
            why = f"its deployments (model_list entries {entries}) have different prices"
        elif any(not costs for _, costs in deployments):
            why = f"only some of its deployments (model_list entries {entries}) have a price"
        else:
            input_price, output_price = distinct.pop()
            prices.append((name, input_price, output_price))
            continue
        notices.append((name, f"{source}: {name} is unpriced: {why}; set its price in a prices file"))
    return tuple(prices), tuple(notices)


def parse_request_multipliers(text: str, source: str = "router config") -> dict[str, float]:
    """{model_name: request limit multiplier} for the models whose `model_info` sets
    `request_limit_multiplier`; models without it count 1 a request.

    A model balanced over several deployments takes its first entry's `model_info`, the
    one a lookup by name finds. A value that is not a positive number is a one-line
    UsageError naming the model.
    """
    multipliers: dict[str, float] = {}
    seen: set[str] = set()
    for position, name, entry in _model_list(text, source):
        if name in seen:
            continue
        seen.add(name)
        info = entry.get("model_info")
        value = info.get(MULTIPLIER_KEY) if isinstance(info, dict) else None
        if value is None:
            continue
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        if not (math.isfinite(number) and number > 0):
            raise UsageError(
                f"{source}: model_list entry {position} ({name}): {MULTIPLIER_KEY} is not a positive number: {value!r}"
            )
        multipliers[name] = number
    return multipliers


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"router config not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"router config unreadable: {path}: {exc.strerror}") from None


def load_router_config(path: str | Path) -> tuple[str, ...]:
    """Read a router configuration file; see `parse_router_config`."""
    return parse_router_config(_read(Path(path)), source=str(path))


def load_request_multipliers(path: str | Path) -> dict[str, float]:
    """Read a router configuration file's request limit multipliers; see
    `parse_request_multipliers`."""
    return parse_request_multipliers(_read(Path(path)), source=str(path))


def load_router_prices(path: str | Path) -> tuple[tuple[RouterPrice, ...], tuple[tuple[str, str], ...]]:
    """Read a router configuration file's prices; see `parse_router_prices`."""
    return parse_router_prices(_read(Path(path)), source=str(path))
