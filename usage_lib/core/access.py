"""Who is looking, and which requests they may see (SPEC §2).

Pure functions over small lookup tables already read from the database: the viewer's
rows and the catalogue of orgs and tokens. Every choice (org, token) that does not fit
the viewer's role falls back to something narrower, never wider, and the fallback is
reported in `Scope.fallbacks` so callers can log it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping, Sequence

from usage_lib.errors import UsageError, quoted

Role = Literal["admin", "org-admin", "user"]
ROLE_ORDER: tuple[Role, ...] = ("admin", "org-admin", "user")

ALL = "all"
#: An id as a URL or a widget names it: ASCII digits, at most 18 (any longer is no id, and
#: `int()` of thousands of digits is slow or refused).
_ID = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Org:
    id: int
    name: str


@dataclass(frozen=True)
class Viewer:
    id: int
    username: str
    email: str
    role: Role
    org_id: int
    team_ids: frozenset[int]

    @property
    def label(self) -> str:
        return self.email or self.username


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    owner_id: int
    owner_email: str | None
    owner_org_id: int | None
    service_account_id: int | None
    service_account: str | None
    service_account_team_id: int | None
    service_account_org_id: int | None

    @property
    def display_name(self) -> str:
        """Service-account tokens are shown under their service account's name."""
        return self.service_account if self.service_account_id is not None else self.name

    def belongs_to(self, org_id: int) -> bool:
        """A token is an org's when its owner's profile or its service account's team is in it."""
        return org_id in (self.owner_org_id, self.service_account_org_id)

    def selectable_in(self, org_id: int) -> bool:
        """Whether the token can be the selected token of an org.

        A token whose owner has no profile is no org's token (the gateway crashes on
        it), even when its service account's team is in the org.
        """
        return self.owner_org_id is not None and self.belongs_to(org_id)


@dataclass(frozen=True)
class Catalogue:
    """The small tables: every org and every token, read once per refresh."""

    orgs: tuple[Org, ...]
    tokens: Mapping[int, Token]

    def org(self, org_id: int | None) -> Org | None:
        return next((org for org in self.orgs if org.id == org_id), None)


@dataclass(frozen=True)
class Reach:
    """Which requests a viewer may see: all of them, or those on `token_ids`, plus those
    on `email_token_ids` whose `user_id` equals `email`."""

    everything: bool
    token_ids: frozenset[int] = frozenset()
    email: str | None = None
    email_token_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Scope:
    """What one refresh shows: the viewer, the org (None = All), the token, the reach."""

    viewer: Viewer
    org: Org | None
    token: Token | None
    reach: Reach
    org_choices: tuple[Org | None, ...]
    fallbacks: tuple[str, ...] = field(default=())

    @property
    def top_kind(self) -> Literal["org", "token", "user_id"]:
        if self.org is None:
            return "org"
        return "user_id" if self.token is not None else "token"


def resolve_viewer(rows: Iterable[Mapping], who: str) -> Viewer:
    """Pick the viewer named `who` (email, else username) from `queries.viewer_rows` rows.

    Rows carry user columns plus one group name, profile org and team id each (outer
    joins, so any of those may be None).
    """
    rows = list(rows)
    who = who.strip() if isinstance(who, str) else ""
    if not who:
        raise UsageError("no viewer given: name a gateway user by email or username")
    by_email = [row for row in rows if row["email"] == who]
    by_name = [row for row in rows if row["username"] == who]
    matches = by_email or by_name
    user_ids = sorted({row["user_id"] for row in matches})
    if not user_ids:
        raise UsageError(f"unknown viewer {who!r}: no gateway user has that email or username")
    if len(user_ids) > 1:
        active = sorted({row["user_id"] for row in matches if row["is_active"]})
        if len(active) != 1:
            raise UsageError(f"viewer {who!r} is ambiguous: {len(user_ids)} users share that email")
        user_ids = active
    mine = [row for row in matches if row["user_id"] == user_ids[0]]
    first = mine[0]
    if not first["is_active"]:
        raise UsageError(f"viewer {who!r} is an inactive gateway user")
    groups = {row["group_name"] for row in mine}
    role = next((candidate for candidate in ROLE_ORDER if candidate in groups), None)
    if role is None:
        raise UsageError(f"viewer {who!r} has no dashboard role (group admin, org-admin or user)")
    org_id = first["org_id"]
    if org_id is None:
        raise UsageError(f"viewer {who!r} has no profile, so no organisation: nothing to show")
    return Viewer(
        id=first["user_id"],
        username=first["username"],
        email=first["email"] or "",
        role=role,
        org_id=org_id,
        team_ids=frozenset(row["team_id"] for row in mine if row["team_id"] is not None),
    )


def build_catalogue(rows: Iterable[Mapping]) -> Catalogue:
    """Split `queries.catalogue_rows` rows (kind 'org' or 'token') into a Catalogue."""
    orgs: list[Org] = []
    tokens: dict[int, Token] = {}
    for row in rows:
        if row["kind"] == "org":
            orgs.append(Org(id=row["id"], name=row["name"]))
        elif row["kind"] == "token":
            tokens[row["id"]] = Token(
                id=row["id"],
                name=row["name"],
                owner_id=row["owner_id"],
                owner_email=row["owner_email"],
                owner_org_id=row["owner_org_id"],
                service_account_id=row["sa_id"],
                service_account=row["sa_name"],
                service_account_team_id=row["sa_team_id"],
                service_account_org_id=row["sa_org_id"],
            )
    orgs.sort(key=lambda org: (org.name.casefold(), org.id))
    return Catalogue(orgs=tuple(orgs), tokens=tokens)


def _parse_org_request(requested: object, catalogue: Catalogue) -> Org | None | str:
    """Map a requested org (None, 'all', an id, a name) to an Org, None (=All) or 'unknown'."""
    if requested is None:
        return "default"
    if isinstance(requested, Org):
        requested = requested.id
    if isinstance(requested, str):
        text = requested.strip()
        if text.lower() == ALL:
            return None
        if _ID.fullmatch(text):
            requested = int(text)
        else:
            by_name = next((org for org in catalogue.orgs if org.name == text), None)
            return by_name if by_name is not None else "unknown"
    if isinstance(requested, int) and not isinstance(requested, bool):
        org = catalogue.org(requested)
        return org if org is not None else "unknown"
    return "unknown"


def choose_org(viewer: Viewer, catalogue: Catalogue, requested: object) -> tuple[Org | None, str | None]:
    """The org a refresh shows (None = All) and a note when the request was not honoured."""
    own = catalogue.org(viewer.org_id)
    if own is None:
        raise UsageError(f"viewer {viewer.label!r} belongs to an org that does not exist")
    wanted = _parse_org_request(requested, catalogue)
    if wanted == "default":
        return own, None
    if viewer.role != "admin":
        if wanted == own:
            return own, None
        return own, f"org {quoted(requested)} is not open to {viewer.role} {viewer.label}; showing {own.name}"
    if wanted == "unknown":
        return own, f"unknown org {quoted(requested)}; showing {own.name}"
    return wanted, None


def org_token_ids(catalogue: Catalogue, org_id: int) -> frozenset[int]:
    return frozenset(token.id for token in catalogue.tokens.values() if token.belongs_to(org_id))


def reach_for(viewer: Viewer, catalogue: Catalogue, org: Org | None) -> Reach:
    """The requests in the viewer's reach for the chosen org (SPEC §2)."""
    if viewer.role == "admin" and org is None:
        return Reach(everything=True)
    if viewer.role in ("admin", "org-admin"):
        return Reach(everything=False, token_ids=org_token_ids(catalogue, org.id))
    own_or_team = frozenset(
        token.id
        for token in catalogue.tokens.values()
        if token.owner_id == viewer.id
        or (token.service_account_team_id is not None and token.service_account_team_id in viewer.team_ids)
    )
    email_tokens = frozenset(
        token.id for token in catalogue.tokens.values() if token.owner_org_id == viewer.org_id
    )
    if not viewer.email:
        return Reach(everything=False, token_ids=own_or_team)
    return Reach(everything=False, token_ids=own_or_team, email=viewer.email, email_token_ids=email_tokens)


def _parse_token_request(requested: object) -> int | None:
    if isinstance(requested, bool):
        return None
    if isinstance(requested, int):
        return requested
    if isinstance(requested, str) and _ID.fullmatch(requested.strip()):
        return int(requested)
    return None


def choose_token(catalogue: Catalogue, org: Org | None, requested: object) -> tuple[Token | None, str | None]:
    """The selected token, if it exists and belongs to the selected org (any token with All)."""
    if requested is None or requested == "":
        return None, None
    token = catalogue.tokens.get(_parse_token_request(requested))
    if token is None:
        return None, f"unknown token {quoted(requested)} ignored"
    if org is not None and not token.selectable_in(org.id):
        return None, f"token {token.id} is not a token of {org.name}; ignored"
    return token, None


def can_open(viewer: Viewer, token: Token, org: Org) -> bool:
    """Whether a token row of `org`'s table drills down for this viewer."""
    if not token.selectable_in(org.id):
        return False
    if viewer.role in ("admin", "org-admin"):
        return True
    return token.owner_id == viewer.id or (
        token.service_account_team_id is not None and token.service_account_team_id in viewer.team_ids
    )


def org_choices(viewer: Viewer, catalogue: Catalogue) -> tuple[Org | None, ...]:
    """Global admins choose All or any org; everyone else only their own."""
    if viewer.role == "admin":
        return (None, *catalogue.orgs)
    own = catalogue.org(viewer.org_id)
    return (own,) if own is not None else ()


def resolve_scope(viewer: Viewer, catalogue: Catalogue, org: object = None, token: object = None) -> Scope:
    """Check the requested org and token against the viewer's role; fall back as SPEC §2 says."""
    chosen_org, org_note = choose_org(viewer, catalogue, org)
    chosen_token, token_note = choose_token(catalogue, chosen_org, token)
    notes: Sequence[str] = [note for note in (org_note, token_note) if note]
    return Scope(
        viewer=viewer,
        org=chosen_org,
        token=chosen_token,
        reach=reach_for(viewer, catalogue, chosen_org),
        org_choices=org_choices(viewer, catalogue),
        fallbacks=tuple(notes),
    )
