"""Per-model prices (issue 14): from the router config, overridden by a prices file.

A price is per million input and output tokens, in one currency, and may start at a
`valid_from` instant so that last month's cost uses last month's prices. A model
without a price in effect is unpriced, never free. Money is Decimal throughout.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from usage_lib.errors import UsageError
from usage_lib.gateway.routerconfig import load_router_prices, parse_amount, parse_yaml, plain

#: A prices file's keys (YAML) or columns (CSV); the last two may be left out.
FIELDS = ("model", "input_per_million", "output_per_million", "currency", "valid_from")
REQUIRED = FIELDS[:3]

#: Where a price without `valid_from` starts, for ordering and comparing.
_ALWAYS = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Price:
    """One model's price from `valid_from` on (until its next entry, if any)."""

    model: str
    #: Price of 1,000,000 input tokens.
    input_per_million: Decimal
    output_per_million: Decimal
    #: Upper-case 3-letter code, e.g. "USD".
    currency: str
    #: Aware, UTC; None: since always.
    valid_from: datetime | None
    #: Where it came from, e.g. "router config" or "prices.yaml entry 3".
    source: str


def _start(price: Price) -> datetime:
    return price.valid_from or _ALWAYS


def _changes(prices: Iterable[Price], start: datetime, end: datetime) -> tuple[datetime, ...]:
    return tuple(sorted({p.valid_from for p in prices if p.valid_from and start < p.valid_from < end}))


@dataclass(frozen=True)
class PriceBook:
    """Every price in effect, from the router config and the prices file (`price_book`)."""

    #: Sorted by model, then valid_from (None first).
    prices: tuple[Price, ...] = ()
    #: One line each, e.g. a router-config model left unpriced by conflicting deployments.
    notices: tuple[str, ...] = ()

    @property
    def currency(self) -> str | None:
        """The one currency of all prices (`price_book` refuses mixed ones); None if none."""
        return self.prices[0].currency if self.prices else None

    def price_at(self, model: str, moment: datetime) -> Price | None:
        """The price of `model` in effect at `moment` (aware); None: unpriced then."""
        in_effect = [p for p in self.prices if p.model == model and _start(p) <= moment]
        return max(in_effect, key=_start, default=None)

    def changes(self, start: datetime, end: datetime) -> tuple[datetime, ...]:
        """The instants strictly inside (start, end) where any model's price changes."""
        return _changes(self.prices, start, end)

    def periods(
        self, model: str, start: datetime, end: datetime
    ) -> tuple[tuple[datetime, datetime, Price | None], ...]:
        """[start, end) cut where `model`'s price changes, each piece with its price."""
        cuts = [start, *_changes((p for p in self.prices if p.model == model), start, end), end]
        return tuple((a, b, self.price_at(model, a)) for a, b in zip(cuts, cuts[1:]) if a < b)


EMPTY = PriceBook()


def _valid_from(value: object, where: str) -> datetime | None:
    """A date (00:00 UTC that day) or an ISO 8601 date and time (UTC without an offset).
    YAML hands over unquoted ones as date or datetime objects already."""
    if value is None or value == "":
        return None
    moment = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    if moment is None:
        raise UsageError(f"{where}: valid_from is not a date or an ISO 8601 date and time: {value!r}")
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _price(fields: dict[Any, Any], source: str) -> Price:
    """One entry of a prices file; `source` names it, e.g. "prices.csv line 4"."""
    model = fields.get("model")
    where = f"{source} ({model})" if isinstance(model, str) and model else source
    unknown = [str(key) for key in fields if key not in FIELDS]
    if unknown:  # before the model, so that a misspelt "model" key reads as such
        names = ", ".join(map(repr, unknown))
        raise UsageError(f"{where}: unknown key {names}; expected {', '.join(FIELDS)}")
    if model in (None, ""):
        raise UsageError(f"{source}: no model")
    if not isinstance(model, str):
        raise UsageError(f"{source}: model is not text: {model!r}")
    amounts = []
    for key in REQUIRED[1:]:
        if fields.get(key) in (None, ""):
            raise UsageError(f"{where}: no {key}")
        amounts.append(plain(parse_amount(fields[key], where, key)))
    currency = fields.get("currency") or "USD"
    code = currency.strip().upper() if isinstance(currency, str) else ""
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise UsageError(f"{where}: currency is not a 3-letter code: {currency!r}")
    return Price(model, amounts[0], amounts[1], code, _valid_from(fields.get("valid_from"), where), source)


def _yaml_entries(text: str, source: str) -> Iterable[tuple[str, dict[Any, Any]]]:
    data = parse_yaml(text, source)
    if isinstance(data, dict) and set(data) == {"prices"}:
        data = data["prices"]
    if data is None:
        return
    if not isinstance(data, list):
        raise UsageError(f"{source}: expected a list of prices, or a mapping with only the key 'prices'")
    for number, entry in enumerate(data, start=1):
        if not isinstance(entry, dict):
            raise UsageError(f"{source} entry {number}: not a mapping of {', '.join(FIELDS)}")
        yield f"{source} entry {number}", entry


def _csv_entries(text: str, source: str) -> Iterable[tuple[str, dict[Any, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or ()]
    if not header:
        return
    unknown = [name for name in header if name not in FIELDS]
    missing = [name for name in REQUIRED if name not in header]
    if unknown or missing:
        problems = [f"unknown column {name!r}" for name in unknown]
        problems += [f"no column {name!r}" for name in missing]
        raise UsageError(f"{source} line 1: {'; '.join(problems)}; expected {', '.join(FIELDS)}")
    reader.fieldnames = header
    try:
        for row in reader:
            if None in row:
                raise UsageError(f"{source} line {reader.line_num}: more fields than the header has columns")
            yield f"{source} line {reader.line_num}", {key: (value or "").strip() for key, value in row.items()}
    except csv.Error as exc:
        raise UsageError(f"{source} line {reader.line_num}: not valid CSV: {exc}") from None


def parse_prices_file(text: str, source: str, kind: str) -> tuple[Price, ...]:
    """The prices in a prices file's `text` (`kind` "yaml" or "csv"), in file order.

    Any malformed entry, or a second entry for the same model and valid_from, is a
    one-line UsageError naming `source` and the entry ("entry N" in YAML, "line N" in
    CSV). An empty file holds no prices.
    """
    entries = {"yaml": _yaml_entries, "csv": _csv_entries}[kind](text, source)
    prices: list[Price] = []
    first: dict[tuple[str, datetime | None], Price] = {}
    for where, fields in entries:
        price = _price(fields, where)
        earlier = first.setdefault((price.model, price.valid_from), price)
        if earlier is not price:
            raise UsageError(f"{where} ({price.model}): same model and valid_from as {earlier.source}")
        prices.append(price)
    return tuple(prices)


def load_prices_file(path: str | Path) -> tuple[Price, ...]:
    """Read a prices file (.yaml, .yml or .csv); see `parse_prices_file`."""
    path = Path(path)
    kind = {".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"prices file must end in .yaml, .yml or .csv: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often start a CSV with a BOM
    except FileNotFoundError:
        raise UsageError(f"prices file not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"prices file unreadable: {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"prices file is not UTF-8 text: {path}") from None
    return parse_prices_file(text, str(path), kind)


def price_book(
    config_prices: Sequence[Price],
    file_prices: Sequence[Price],
    config_notices: Sequence[tuple[str, str]] = (),
) -> PriceBook:
    """The prices in effect: a model with any entry in the prices file takes all its
    prices from there, the others keep their router-config price.

    `config_notices` are the router config's (model, notice) pairs; a notice about a
    model the file prices no longer applies. Prices in more than one currency cannot be
    summed into one cost: a one-line UsageError.
    """
    from_file = {p.model for p in file_prices}
    prices = [p for p in config_prices if p.model not in from_file] + list(file_prices)
    currencies = sorted({p.currency for p in prices})
    if len(currencies) > 1:
        raise UsageError(
            f"prices in more than one currency ({', '.join(currencies)}): costs cannot be summed; use one currency"
        )
    prices.sort(key=lambda p: (p.model, _start(p)))
    notices = tuple(text for model, text in config_notices if model not in from_file)
    return PriceBook(tuple(prices), notices)


def load_price_book(router_config: Path | None, prices_file: Path | None) -> PriceBook:
    """The price book from the router config and the prices file, either optional."""
    config_prices: list[Price] = []
    config_notices: tuple[tuple[str, str], ...] = ()
    if router_config is not None:
        priced, config_notices = load_router_prices(router_config)
        config_prices = [Price(*price, "USD", None, "router config") for price in priced]
    file_prices = load_prices_file(prices_file) if prices_file is not None else ()
    return price_book(config_prices, file_prices, config_notices)
