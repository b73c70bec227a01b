"""Which renderer writes which file suffix. PDF and PNG are taken from the real page in a
browser instead (`usage_lib.serving.capture`)."""

from __future__ import annotations

from usage_lib.render.files import Renderer, render_csv, render_json, render_zip
from usage_lib.render.offline_page import render_html
from usage_lib.render.text import render_text

RENDERERS: dict[str, Renderer] = {
    ".html": render_html,
    ".json": render_json,
    ".csv": render_csv,
    ".zip": render_zip,
    ".txt": render_text,
}
