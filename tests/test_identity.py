"""Identity sources and URL state, as pure functions (the served page is tested end to end
in tests/test_e2e_identity.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from datetime import datetime
from types import SimpleNamespace
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import nbformat
import pytest
from tornado.httputil import HTTPHeaders
from tornado.web import HTTPError

from tests.support import REPO_ROOT

from usage_lib.serving import identity
from usage_lib.errors import UsageError
from usage_lib.core.usage import Selection
from usage_lib.core.spans import parse_time, range_window
from usage_lib.core.urlstate import query_for, selection_from_query
from usage_lib.serving.voila_process import CONFIG_DIR
from usage_lib.serving.voila_hooks import may_preheat, prelaunch_hook
from usage_lib.settings import Settings
from usage_lib.demo import DEMO_ADMIN_EMAIL


@pytest.fixture(autouse=True)
def no_trusted_viewer(monkeypatch):
    monkeypatch.setattr(identity, "_trusted_viewer", None)


@pytest.mark.parametrize("value", ["ursula@example.org", "root", "a.b+tag@sub.example.co", "x_y-z"])
def test_well_formed_identities_pass(value):
    assert identity.clean_identity(f"  {value} ") == value


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "a@b.org, c@d.org", "Eve <eve@example.org>", "a b", "x" * 255, "o'hara@x.org\n", "é@x.org", "a\x00b"],
)
def test_malformed_identities_are_refused(value):
    assert identity.clean_identity(value) is None


def viewer_of(env: dict[str, str]) -> str:
    return identity.resolve_viewer(Settings.from_env(env), env)


def test_header_mode_needs_the_trusted_value_and_ignores_env_viewer():
    env = {"AQUEDUCT_IDENTITY": "header", "AQUEDUCT_VIEWER": "root"}
    with pytest.raises(identity.SignInRequired):
        viewer_of(env)
    identity.trust_viewer("ursula@example.org")
    assert viewer_of(env) == "ursula@example.org"


def test_jupyterhub_mode_uses_the_hub_user():
    assert viewer_of({"AQUEDUCT_IDENTITY": "jupyterhub", "JUPYTERHUB_USER": "ursula"}) == "ursula"
    with pytest.raises(identity.SignInRequired):
        viewer_of({"AQUEDUCT_IDENTITY": "jupyterhub"})


def test_fixed_mode_uses_the_configured_viewer_and_demo_admin_only_in_demo_mode():
    gateway = {"AQUEDUCT_DB_URL": "sqlite:///gateway.sqlite3"}
    assert viewer_of({**gateway, "AQUEDUCT_VIEWER": "olga"}) == "olga"
    assert viewer_of({**gateway, "AQUEDUCT_DEMO": "1"}) == DEMO_ADMIN_EMAIL
    with pytest.raises(identity.SignInRequired):
        viewer_of(gateway)


def test_unknown_identity_mode_is_an_error():
    env = {"AQUEDUCT_IDENTITY": "cookie", "AQUEDUCT_VIEWER": "olga"}
    assert any("AQUEDUCT_IDENTITY" in problem for problem in Settings.from_env(env).problems)
    with pytest.raises(UsageError, match="unknown identity source"):
        viewer_of(env)


def hook_request(headers: dict[str, str] | list[tuple[str, str]]):
    http_headers = HTTPHeaders()
    for name, value in (headers.items() if isinstance(headers, dict) else headers):
        http_headers.add(name, value)
    return SimpleNamespace(request=SimpleNamespace(headers=http_headers, uri="/", remote_ip="127.0.0.1"))


def notebook():
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('dashboard')")])


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Forwarded-Email": ""}, {"X-Forwarded-Email": "a@b.org, c@d.org"},
     [("X-Forwarded-Email", "a@b.org"), ("X-Forwarded-Email", "c@d.org")]],
)
def test_hook_refuses_missing_malformed_or_repeated_header(monkeypatch, caplog, headers):
    monkeypatch.setenv("AQUEDUCT_IDENTITY", "header")
    with caplog.at_level(logging.WARNING), pytest.raises(HTTPError) as raised:
        prelaunch_hook(hook_request(headers), notebook(), ".")
    assert raised.value.status_code == 403
    assert "refused" in caplog.text


def test_hook_inserts_the_viewer_as_a_first_cell(monkeypatch):
    monkeypatch.setenv("AQUEDUCT_IDENTITY", "header")
    monkeypatch.setenv("AQUEDUCT_IDENTITY_HEADER", "X-Auth-User")
    nb = prelaunch_hook(hook_request({"x-auth-user": "ursula@example.org"}), notebook(), ".")
    assert len(nb.cells) == 2
    namespace: dict = {}
    exec(nb.cells[0].source, namespace)
    assert viewer_of({"AQUEDUCT_IDENTITY": "header"}) == "ursula@example.org"


def test_hook_does_nothing_outside_header_mode(monkeypatch):
    monkeypatch.delenv("AQUEDUCT_IDENTITY", raising=False)
    assert len(prelaunch_hook(hook_request({}), notebook(), ".").cells) == 1


@pytest.mark.parametrize("mode, preheat", [
    ("fixed", True), ("jupyterhub", True), ("", True), ("header", False), ("HEADER", False), ("heder", False),
])
def test_kernels_are_preheated_only_when_every_page_shows_the_same_viewer(mode, preheat):
    assert may_preheat({"AQUEDUCT_IDENTITY": mode}) is preheat


def load_voila_config(monkeypatch, mode: str):
    from traitlets.config import Config

    monkeypatch.setenv("AQUEDUCT_IDENTITY", mode)
    config = Config()
    exec((CONFIG_DIR / "voila.py").read_text(), {"get_config": lambda: config})
    return config.VoilaConfiguration


def test_voila_config_in_header_mode_keeps_the_hook_and_no_preheated_kernel(monkeypatch):
    voila = load_voila_config(monkeypatch, "header")
    assert voila.prelaunch_hook is prelaunch_hook
    assert voila.preheat_kernel is False


def test_voila_config_with_a_fixed_viewer_preheats_without_the_hook(monkeypatch):
    voila = load_voila_config(monkeypatch, "fixed")
    assert voila.preheat_kernel is True and voila.default_pool_size >= 1
    assert "prelaunch_hook" not in voila


BASE = Selection(tz="Europe/Vienna")


def test_url_state_uses_the_gateways_parameter_names():
    selection = selection_from_query("org=all&span=1w&token=12&top=25", BASE)
    assert (selection.org, selection.span, selection.token, selection.top, selection.tz) == ("all", "1w", "12", "25", "Europe/Vienna")


def test_url_identity_is_ignored_and_logged(caplog):
    with caplog.at_level(logging.WARNING):
        selection = selection_from_query("viewer=root&email=root@example.org&span=1h", BASE)
    assert "identity" in caplog.text
    assert selection.span == "1h"
    assert not any("root" in str(value) for value in vars(selection).values())


def test_garbage_url_values_fall_back_when_normalised():
    selection, notes = selection_from_query("span=1y&top=7&org=abc&token=x1", BASE).normalised()
    assert (selection.span, selection.top) == ("1d", 100)
    assert len(notes) == 2


def test_query_for_round_trips():
    query = query_for(None, "1w", 5, 25)
    selection = selection_from_query(query, BASE)
    assert (selection.org, selection.span, selection.token, selection.top) == ("all", "1w", "5", "25")


def test_month_span_is_a_url_preset():
    selection, notes = selection_from_query("span=1m", BASE).normalised()
    assert (selection.span, notes) == ("1m", ())


def test_query_for_a_custom_range_round_trips_start_and_end_instead_of_span():
    vienna = ZoneInfo("Europe/Vienna")
    start, end = datetime(2026, 11, 20, tzinfo=vienna), datetime(2026, 11, 23, 12, 30, tzinfo=vienna)
    query = query_for("all", "1w", None, 10, start, end)
    assert parse_qs(query) == {"org": ["all"], "start": ["2026-11-20T00:00:00+01:00"],
                               "end": ["2026-11-23T12:30:00+01:00"], "top": ["10"]}
    selection = selection_from_query(query, BASE)
    assert selection.custom and (selection.org, selection.top) == ("all", "10")
    assert parse_time(selection.start, vienna, "start") == start
    assert parse_time(selection.end, vienna, "end") == end
    # Back to a preset: no range in the query, none in the selection.
    again = selection_from_query(query_for("all", "1w", None, 10), selection)
    assert (again.span, again.start, again.end) == ("1w", None, None)


@pytest.mark.parametrize("typed, read", [
    ("2026-11-20T00:00+01:00", "2026-11-20T00:00+01:00"),           # '+' unencoded: a space
    ("2026-11-20T00:00:00.5+01:00", "2026-11-20T00:00:00.5+01:00"),
    ("2026-11-20T00:00%2B01:00", "2026-11-20T00:00+01:00"),           # encoded: as given
    ("2026-11-20 00:00", "2026-11-20 00:00"),                         # a space as the separator
    ("2026-11-20T00:00-05:00", "2026-11-20T00:00-05:00"),
])
def test_url_range_times_are_taken_as_typed_with_an_unencoded_plus_restored(typed, read):
    selection = selection_from_query(f"start={typed}&end=2026-11-21", BASE)
    assert (selection.start, selection.end) == (read, "2026-11-21")


def test_url_range_with_one_end_only_is_passed_on_for_the_core_to_refuse():
    selection = selection_from_query("span=1h&start=2026-11-20", BASE)
    assert selection.custom and (selection.start, selection.end) == ("2026-11-20", None)
    with pytest.raises(UsageError, match="needs both start and end"):
        range_window(selection.start, selection.end, datetime(2026, 11, 24, tzinfo=ZoneInfo("UTC")), ZoneInfo("UTC"))


def test_jupyterhub_and_voila_configs_come_from_one_source(monkeypatch):
    """deploy/jupyterhub_config.py hands Voila, as a server extension, the options
    `serve` loads from voila_config/voila.py: template, theme, hardening, culling."""
    from traitlets.config import Config
    from voila.app import Voila

    monkeypatch.setenv("AQUEDUCT_IDENTITY", "jupyterhub")
    monkeypatch.setenv("JUPYTER_PATH", "")
    served = Config()
    exec((CONFIG_DIR / "voila.py").read_text(), {"get_config": lambda: served})
    hub = Config()
    exec((REPO_ROOT / "deploy" / "jupyterhub_config.py").read_text(), {"get_config": lambda: hub})
    app = Voila()
    app.parse_command_line(hub.Spawner.args)
    for section in ("VoilaConfiguration", "MappingKernelManager"):
        for name, value in app.config[section].items():
            assert str(served[section][name]) == str(value), f"{section}.{name}"
    assert app.config.VoilaConfiguration.template == "aqueduct"
    assert hub.Spawner.environment["JUPYTER_PATH"].split(os.pathsep)[0] == os.environ["JUPYTER_PATH"].split(os.pathsep)[0]
    assert (Path(hub.Spawner.notebook_dir) / Path(hub.Spawner.default_url).name).is_file()
