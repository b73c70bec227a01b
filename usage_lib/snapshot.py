"""`usage-dashboard snapshot`: the view as it was, written to a file (docs/snapshots.md).

The format is the output file's suffix: a renderer of `usage_lib.render.registry`
(.html, .json, .csv, .zip, .txt) over one report, or the real page captured in a
browser (.pdf, .png: `usage_lib.serving.capture`). Every export takes its figures at one
instant: the selection's `now`, else the moment the export starts. The rendered formats
carry the health figures too (`compute_report`), a PDF both of the page's sections, a
PNG the one `section` names.

Files appear whole or not at all: each is written beside its target under a hidden
temporary name and renamed into place once every file of the export is written; on any
failure the temporary files are removed and the error is one line.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from usage_lib.core.health import Health
from usage_lib.core.urlstate import USAGE_SECTION
from usage_lib.core.usage import Selection
from usage_lib.errors import UsageError
from usage_lib.render.files import Report
from usage_lib.render.registry import RENDERERS
from usage_lib.serving.capture import CAPTURED, capture
from usage_lib.settings import Settings
from usage_lib.ui.dashboard import Dashboard

FORMATS = tuple(RENDERERS) + CAPTURED


def export_snapshot(settings: Settings, selection: Selection, out: Path | str, viewer: str | None = None,
                    section: str = USAGE_SECTION) -> list[Path]:
    """Write the snapshot `out` (format from its suffix) of `viewer`'s `selection`; a PNG
    shows the page's `section` (`urlstate.SECTIONS`). Returns the files written (a
    `.csv` export writes several). Raises `UsageError`."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the format of {out}: use one of {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise UsageError(f"the directory of {out} does not exist")
    viewer = viewer or settings.viewer
    if not viewer:
        raise UsageError("no viewer: give --viewer EMAIL_OR_USERNAME")
    selection = pinned(selection)
    if suffix in CAPTURED:
        _report, files = capture(settings, viewer, selection, [suffix], section=section)
        return write_files(out.parent, {out.name: files[suffix]})
    if suffix == ".html":
        usage, widget = dashboard_view(settings, viewer, selection)
        report = Report.of(usage, widget, view_health(settings, selection, viewer))
    else:
        report = compute_report(settings, selection, viewer)
    return write_files(out.parent, RENDERERS[suffix](report, out.stem))


def pinned(selection: Selection) -> Selection:
    """`selection` at one instant: its `now`, else this moment (to the second)."""
    if selection.now is not None:
        return selection
    return dataclasses.replace(selection, now=datetime.now(timezone.utc).replace(microsecond=0))


def compute_report(settings: Settings, selection: Selection, viewer: str | None = None) -> Report:
    """The report of `viewer`'s `selection` (a pinned one: `pinned`) for a file or the
    terminal: the figures and the health figures."""
    usage = settings.compute(selection, viewer)
    return Report.of(usage, health=view_health(settings, selection, viewer))


def view_health(settings: Settings, selection: Selection, viewer: str | None) -> Health:
    """The health figures of a view whose figures were just computed: what the viewer
    may not choose is noted already, so it is not noted twice."""
    with _quiet("usage_lib.core.usage"):
        return settings.compute_health(selection, viewer)


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Only errors from `logger` while inside."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def dashboard_view(settings: Settings, viewer: str, selection: Selection):
    """The live dashboard's widgets, built in this process (no kernel) and refreshed
    once: (usage, root widget), so that the snapshot looks like the page."""
    dashboard = Dashboard(dataclasses.replace(settings, view=selection), selection, viewer=viewer)
    try:
        with _quiet("usage_lib.ui.dashboard"):  # a refused viewer is our one-line error, not also a log line
            usage = dashboard.refresh()
    finally:
        dashboard.close()  # the database; the widgets live on until embedded
    if usage is None:
        raise UsageError(dashboard.error or "the dashboard could not compute its figures")
    return usage, dashboard.widget


def write_files(directory: Path, files: dict[str, bytes]) -> list[Path]:
    """Write `files` (name -> content) into `directory`, all or none."""
    partials: list[tuple[Path, Path]] = []
    target = directory
    try:
        for name, data in files.items():
            target = directory / name
            if target.is_dir():
                raise UsageError(f"cannot write {target}: it is a directory")
            handle, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
            partials.append((Path(partial), target))
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.chmod(partial, 0o644)
        for partial, target in partials:
            partial.replace(target)
    except OSError as exc:
        # Named as asked for, not by the hidden temporary name the error carries.
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        for partial, _target in partials:
            partial.unlink(missing_ok=True)
    return [target for _partial, target in partials]
