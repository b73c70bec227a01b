"""The health figures (issue 15) in words, for the text report and the offline page.

Both read the report's "health" object (`Health.to_json`, README "The JSON report")
through these functions, so each figure is worded in one place: response-time
percentiles per path kind and per model (and the gateway's own overhead where it is
logged), failures
by kind with the failure rate, requests in flight with the oldest's age, completions
without reported tokens, and for admins the tokens near a rate limit.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from usage_lib.core.headroom import MEASURES, NEAR_LIMIT
from usage_lib.core.health import FAILURE_KINDS
from usage_lib.render.formatting import age, count, is_missing, milliseconds, name, share

HEALTH_TITLE = "Health"
LATENCY_TITLE = "Response time"
OVERHEAD_TITLE = "Gateway overhead"
BY_MODEL_TITLE = "Response time by model"
KIND_TITLES = {"completion": "Completions", "embedding": "Embeddings"}
#: The percentiles the text report and the page show (the JSON and CSV files hold p90 too).
SHOWN_PERCENTILES = ("p50", "p95", "p99")
LATENCY_HEADERS = ("Requests", *SHOWN_PERCENTILES)
BY_MODEL_HEADERS = ("Model", "Path", *LATENCY_HEADERS)
NEAR_LIMIT_TITLE = f"Tokens near a limit (busiest minute at {NEAR_LIMIT:.0%} or more of it)"
NEAR_LIMIT_HEADERS = ("Token", "Share of limit", "Busiest minute")
NONE_NEAR_LIMIT = "none"
#: What each limit counts, by the headroom frame's limit column.
LIMIT_WORDS = {"requests_limit": "requests", "input_limit": "input tokens", "output_limit": "output tokens"}
#: The one-line figures' labels (`facts`; the live page's tiles too).
FAILED_LABEL = "Failed"
IN_FLIGHT_LABEL = "In flight"
TOKENS_UNKNOWN_LABEL = "Tokens unknown"
OLDEST_WAITING = "the oldest waiting {age}"
#: The live page (issue 15 item 7): its section, tiles, cards and tables.
FAILURE_RATE_LABEL = "Failure rate"
LATENCY_TILE = "{kind}: response time"
OVERHEAD_TILE = f"{OVERHEAD_TITLE} (p50 / p95)"
NO_OVERHEAD_NOTE = "not logged by this gateway"
LATENCY_OVER_TIME_TITLE = "Response Time Over Time"
FAILURES_OVER_TIME_TITLE = "Failures Over Time"
MODELS_TABLE_TITLE = "Health by Model"
MODELS_TABLE_HEADERS = ("Model", "Path", "Requests", *SHOWN_PERCENTILES, "Failed", "Failure rate", IN_FLIGHT_LABEL,
                        TOKENS_UNKNOWN_LABEL)
STATUS_TABLE_TITLE = "Status Codes"
STATUS_TABLE_HEADERS = ("Status", "Kind", "Requests", "Share")
#: A status code not yet written (the request is in flight).
NO_STATUS = "none yet"
HEADROOM_TITLE = "Rate-limit headroom"
HEADROOM_NOTE = "each token's busiest minute of the window against its per-minute limits"
HEADROOM_HEADERS = ("Token", "Requests / min", "Input tokens / min", "Output tokens / min", "Share of limit")
NO_LIMIT = "no limit"
NO_LIMITS_NOTE = "this gateway's database has no per-minute limits"
NO_TOKEN_LIMITS = "none (no token here has a per-minute limit)"


def tokens_unknown_text(unknown: int) -> str:
    """``5 completions ended without reported tokens``."""
    return f"{count(unknown)} completion{'' if unknown == 1 else 's'} ended without reported tokens"


def latency_rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """Per path kind (rows of "latency" or "processing"): its title and the texts of its
    requests with a time, p50, p95 and p99 (the em dash without requests)."""
    return [(KIND_TITLES[row["kind"]], [count(row["requests"]), *(milliseconds(row[p]) for p in SHOWN_PERCENTILES)])
            for row in rows]


def model_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Per model and path kind ("latency_by_model" rows): the model's name (N/A: none),
    the kind, requests with a time, p50, p95 and p99."""
    return [[name(row["model"]), KIND_TITLES[row["kind"]], *texts]
            for row, (_, texts) in zip(rows, latency_rows(rows))]


def failure_counts(statuses: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """All requests (in flight too), each failure kind and the failed ones, from the
    requests per status code."""
    totals = {kind: sum(row["requests"] for row in statuses if row["kind"] == kind) for kind in FAILURE_KINDS}
    return {"requests": sum(row["requests"] for row in statuses), **totals,
            "failed": sum(totals.values())}


def facts(health: Mapping[str, Any], oldest_age_s: float | None) -> list[tuple[str, str]]:
    """The one-line figures, (label, text): failures, in flight, tokens not reported."""
    failures = failure_counts(health["statuses"])
    requests, failed = failures["requests"], failures["failed"]
    rate = share(failed / requests) if requests else share(None)
    kinds = ", ".join(f"{kind} {count(failures[kind])}" for kind in FAILURE_KINDS)
    in_flight = health["in_flight"]
    waiting = (", " + OLDEST_WAITING.format(age=age(oldest_age_s))) if in_flight and oldest_age_s is not None else ""
    unknown = health["tokens_unknown"]
    return [
        (FAILED_LABEL, f"{count(failed)} of {count(requests)} requests ({rate}): {kinds}"),
        (IN_FLIGHT_LABEL, f"{count(in_flight)}{waiting}"),
        (TOKENS_UNKNOWN_LABEL, tokens_unknown_text(unknown)),
    ]


def _weighted(value: float) -> str:
    """A weighted request count: at most two decimals, ``11``, ``2.5``."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def busiest_text(row: Mapping[str, Any], busiest: str) -> str:
    """A token's busiest minute in one measure (`MEASURES`' busiest column): weighted
    requests with at most two decimals, tokens as counts."""
    return _weighted(row[busiest]) if busiest == "busiest_requests" else count(row[busiest])


def has_limit(value: Any) -> bool:
    """A limit column's value is a limit (NULL and NaN: none)."""
    return not is_missing(value)


def headroom_cell(row: Mapping[str, Any], busiest: str, limit: str) -> str:
    """One measure of a headroom row: ``11 of 10``; without a limit ``11 (no limit)``."""
    if not has_limit(row[limit]):
        return f"{busiest_text(row, busiest)} ({NO_LIMIT})"
    return f"{busiest_text(row, busiest)} of {count(row[limit])}"


def near_limit_rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """Per token near a limit ("near_limit" rows): "#id", its largest share of a limit,
    and its busiest minute against each limit it has, e.g. ``11 of 10 requests``."""
    return [
        (f"#{row['token_id']}", share(row["peak_share"]), ", ".join(
            f"{busiest_text(row, busiest)} of {count(row[limit])} {LIMIT_WORDS[limit]}"
            for busiest, limit, _ in MEASURES if row[limit] is not None))
        for row in rows
    ]


def health_notes(data: Mapping[str, Any]) -> list[str]:
    """The health figures' notices the report does not already give (e.g. why no
    gateway overhead is shown)."""
    return [notice for notice in data["health"]["notices"] if notice not in data["notices"]]
