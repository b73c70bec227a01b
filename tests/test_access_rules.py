"""SPEC §2: who sees which requests, for every role, org choice and token choice.

On the tiny organisation of `tests.support.gateway.build_tiny_org`, where each token's
requests come in distinct powers of two, so a total names exactly what was counted.
Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.gateway import NOW, build_tiny_org
from usage_lib import Selection, UsageError, compute_usage, open_database

EVERYTHING = 1 + 2 + 64 + 512 + 1024 + 4 + 8 + 128 + 16 + 256 + 32
ACME = 1 + (2 + 64 + 512 + 1024) + 4          # owners in Acme, plus ml-bot (team in Acme)
BETA = 4 + (8 + 128) + (16 + 256)             # bert owns ml-bot, bert and bee-bot
URSULA = 1 + 4 + 64                            # her token, her team's bot, her email on uwe's


@pytest.fixture
def tiny(gateway_db):
    org = build_tiny_org(gateway_db())
    db = open_database(org.url)
    yield org, db
    db.close()


def total(db, viewer, **selection) -> int:
    return compute_usage(db, viewer, Selection(now=NOW, **selection)).metrics.total_requests


def scope_of(db, viewer, **selection):
    usage = compute_usage(db, viewer, Selection(now=NOW, **selection))
    return usage.scope, usage.fallbacks


def test_global_admin_with_all_sees_every_request(tiny):
    org, db = tiny
    assert total(db, "root@example.org", org="all") == EVERYTHING


def test_global_admin_defaults_to_own_org_not_all(tiny):
    org, db = tiny
    scope, _ = scope_of(db, "root@example.org")
    assert scope.org.name == "Acme"
    assert total(db, "root@example.org") == ACME


def test_global_admin_choosing_an_org_sees_it_as_its_org_admin(tiny):
    org, db = tiny
    assert total(db, "root@example.org", org=org.orgs["Beta"]) == BETA
    assert total(db, "root@example.org", org="Beta") == BETA


def test_org_totals_can_exceed_the_all_total(tiny):
    org, db = tiny
    by_org = sum(total(db, "root", org=org.orgs[name]) for name in ("Acme", "Beta", "Empty"))
    # ml-bot counts for both orgs; ghost's token (owner without profile) for none.
    assert by_org == EVERYTHING + 4 - 32


def test_org_admin_sees_owner_org_tokens_and_team_service_accounts(tiny):
    org, db = tiny
    assert total(db, "olga@example.org") == ACME


def test_org_with_no_users_is_a_choice_and_empty(tiny):
    org, db = tiny
    scope, _ = scope_of(db, "root", org="Empty")
    assert scope.org.name == "Empty"
    assert [choice.name if choice else "All" for choice in scope.org_choices] == ["All", "Acme", "Beta", "Empty"]
    assert total(db, "root", org="Empty") == 0


def test_standard_user_sees_own_team_and_exact_email_matches_in_own_org(tiny):
    org, db = tiny
    assert total(db, "ursula@example.org") == URSULA


def test_email_match_is_case_sensitive_and_untrimmed(tiny):
    org, db = tiny
    usage = compute_usage(db, "ursula", Selection(now=NOW, token=org.tokens["uwe"]))
    assert usage.metrics.total_requests == 64
    assert list(usage.top["id"]) == ["ursula@example.org"]


def test_email_match_needs_the_token_owner_in_viewers_org(tiny):
    org, db = tiny
    # bert (Beta) owns bert and bee-bot: ursula's email there (128, 256) is not hers to see.
    assert total(db, "ursula", token=org.tokens["bert"]) == URSULA


def test_empty_email_matches_nothing(tiny):
    org, db = tiny
    assert total(db, "nadia") == 0


def test_cross_org_service_account_token_is_in_both_orgs_reach(tiny):
    org, db = tiny
    for name in ("Acme", "Beta"):
        usage = compute_usage(db, "root", Selection(now=NOW, org=name, token=org.tokens["ml-bot"]))
        assert usage.scope.token is not None
        assert usage.metrics.total_requests == 4


def test_standard_user_owning_a_service_account_token_sees_it(tiny):
    org, db = tiny
    assert total(db, "bert@example.org") == BETA


@pytest.mark.parametrize("requested", ["all", "Beta", "2", 2, "999", "abc"])
def test_non_admins_cannot_leave_their_org(tiny, requested):
    org, db = tiny
    for viewer, expected in (("olga", ACME), ("ursula", URSULA)):
        scope, _ = scope_of(db, viewer, org=requested)
        assert scope.org.name == "Acme"
        assert total(db, viewer, org=requested) == expected


def test_refused_org_choice_is_reported(tiny):
    org, db = tiny
    _, fallbacks = scope_of(db, "olga", org="all")
    assert any("not open" in note for note in fallbacks)


@pytest.mark.parametrize("requested", ["999", "abc", 999, ""])
def test_admin_unknown_org_falls_back_to_own_org(tiny, requested):
    org, db = tiny
    scope, _ = scope_of(db, "root", org=requested)
    assert scope.org.name == "Acme"


def test_token_of_another_org_is_ignored(tiny):
    org, db = tiny
    scope, fallbacks = scope_of(db, "root", org="Acme", token=org.tokens["bert"])
    assert scope.token is None and fallbacks
    assert total(db, "olga", token=org.tokens["bee-bot"]) == ACME


@pytest.mark.parametrize("requested", ["x1", "12345", -1, "1; DROP TABLE x"])
def test_unknown_or_garbage_token_is_ignored(tiny, requested):
    org, db = tiny
    scope, _ = scope_of(db, "olga", token=requested)
    assert scope.token is None
    assert total(db, "olga", token=requested) == ACME


def test_token_whose_owner_has_no_profile_is_no_orgs_token(tiny):
    org, db = tiny
    scope, _ = scope_of(db, "root", org="Acme", token=org.tokens["ghost"])
    assert scope.token is None


def test_with_all_any_token_may_be_selected_and_table_stays_org(tiny):
    org, db = tiny
    usage = compute_usage(db, "root", Selection(now=NOW, org="all", token=org.tokens["ghost"]))
    assert usage.metrics.total_requests == 32
    assert usage.top_kind == "org"
    assert list(usage.top["requests"]) == [32]
    assert usage.top["name"].isna().all()


def test_standard_user_may_select_any_org_token_but_sees_only_reach(tiny):
    org, db = tiny
    usage = compute_usage(db, "ursula", Selection(now=NOW, token=org.tokens["uwe"]))
    assert usage.scope.token.id == org.tokens["uwe"]
    assert usage.metrics.total_requests == 64


def test_can_open_only_own_and_team_tokens_for_standard_users(tiny):
    org, db = tiny
    usage = compute_usage(db, "ursula", Selection(now=NOW))
    opens = dict(zip(usage.top["id"], usage.top["can_open"]))
    assert opens == {org.tokens["uwe"]: False, org.tokens["ml-bot"]: True, org.tokens["urs"]: True}


def test_org_admin_can_open_every_token_row(tiny):
    org, db = tiny
    usage = compute_usage(db, "olga", Selection(now=NOW))
    assert usage.top["can_open"].all()


@pytest.mark.parametrize(
    "viewer, message",
    [
        ("nobody@example.org", "unknown viewer"),
        ("ghost", "no profile"),
        ("norole", "no dashboard role"),
        ("", "no viewer"),
    ],
)
def test_viewers_who_may_see_nothing_get_a_clear_error(tiny, viewer, message):
    org, db = tiny
    with pytest.raises(UsageError, match=message):
        compute_usage(db, viewer, Selection(now=NOW))


def test_viewer_found_by_email_or_username(tiny):
    org, db = tiny
    assert scope_of(db, "ursula")[0].viewer == scope_of(db, "ursula@example.org")[0].viewer


def test_inactive_user_is_refused(gateway_db):
    g = gateway_db()
    acme = g.org("Acme")
    g.user("gone", role="user", org=acme, active=False)
    db = open_database(g.url)
    with pytest.raises(UsageError, match="inactive"):
        compute_usage(db, "gone", Selection(now=NOW))
    db.close()


def test_highest_group_wins(gateway_db):
    g = gateway_db()
    acme = g.org("Acme")
    g.user("both", role="user", org=acme, extra_roles=("org-admin",))
    db = open_database(g.url)
    assert scope_of(db, "both")[0].viewer.role == "org-admin"
    db.close()


def test_refused_choices_are_logged(tiny, caplog):
    org, db = tiny
    with caplog.at_level("WARNING", logger="usage_lib.core.usage"):
        compute_usage(db, "ursula", Selection(now=NOW, org="all", token=org.tokens["bert"]))
    assert "ursula@example.org (user)" in caplog.text
    assert "not open" in caplog.text and "ignored" in caplog.text


@pytest.mark.parametrize("viewer, selection, expected", [
    ("root", {"org": "all"}, EVERYTHING),
    ("olga", {}, ACME),
    ("olga", {"org": "all"}, ACME),            # refused: her own org, in the range too
    ("ursula", {}, URSULA),
    ("bert", {}, BETA),                        # he created every Beta token, ml-bot's too
])
def test_a_custom_range_keeps_each_roles_reach(tiny, viewer, selection, expected):
    org, db = tiny
    at = NOW - timedelta(hours=1)              # every request of the tiny org
    assert total(db, viewer, **selection) == expected
    assert total(db, viewer, start=at, end=at + timedelta(minutes=1), **selection) == expected
    assert total(db, viewer, start=at - timedelta(hours=1), end=at, **selection) == 0
