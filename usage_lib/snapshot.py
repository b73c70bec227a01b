"""`usage-dashboard snapshot`: the view as it was, written to a file (docs/snapshots.md).

The format is the output file's suffix: a renderer of `usage_lib.render.registry`
(.html, .json, .csv, .zip, .txt) over one report, or the real page captured in a
browser (.pdf, .png: `usage_lib.serving.capture`). Every export takes its figures at one
instant: the selection's `now`, else the moment the export starts.

Files appear whole or not at all: each is written beside its target under a hidden
temporary name and renamed into place once every file of the export is written; on any
failure the temporary files are removed and the error is one line.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from usage_lib.core.usage import Selection
from usage_lib.errors import UsageError
from usage_lib.render.files import Report
from usage_lib.render.registry import RENDERERS
from usage_lib.serving.capture import CAPTURED, capture
from usage_lib.settings import Settings
from usage_lib.ui.dashboard import Dashboard

FORMATS = tuple(RENDERERS) + CAPTURED


def export_snapshot(settings: Settings, selection: Selection, out: Path | str, viewer: str | None = None) -> list[Path]:
    """Write the snapshot `out` (format from its suffix) of `viewer`'s `selection`.
    Returns the files written (a `.csv` export writes four). Raises `UsageError`."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the format of {out}: use one of {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise UsageError(f"the directory of {out} does not exist")
    viewer = viewer or settings.viewer
    if not viewer:
        raise UsageError("no viewer: give --viewer EMAIL_OR_USERNAME")
    if selection.now is None:
        selection = dataclasses.replace(selection, now=datetime.now(timezone.utc).replace(microsecond=0))
    if suffix in CAPTURED:
        _report, files = capture(settings, viewer, selection, [suffix])
        return write_files(out.parent, {out.name: files[suffix]})
    if suffix == ".html":
        report = Report.of(*dashboard_view(settings, viewer, selection))
    else:
        report = Report.of(settings.compute(selection, viewer))
    return write_files(out.parent, RENDERERS[suffix](report, out.stem))


def dashboard_view(settings: Settings, viewer: str, selection: Selection):
    """The live dashboard's widgets, built in this process (no kernel) and refreshed
    once: (usage, root widget), so that the snapshot looks like the page."""
    dashboard = Dashboard(dataclasses.replace(settings, view=selection), selection, viewer=viewer)
    quiet = logging.getLogger("usage_lib.ui.dashboard")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a refused viewer is our one-line error, not also a log line
    try:
        usage = dashboard.refresh()
    finally:
        quiet.setLevel(level)
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
