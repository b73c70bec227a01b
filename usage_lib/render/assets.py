"""The JavaScript an offline HTML snapshot inlines, obtained from package registries.

An offline snapshot (`usage_lib.render.offline_page`) must draw ipywidgets and bqplot without any
network, so it inlines four AMD bundles. None of them is committed to this repository:

- ``require.js`` from the npm package ``requirejs``;
- ``dist/embed-amd.js`` from the npm package ``@jupyter-widgets/html-manager`` (the
  widget manager of ipywidgets 8 for static pages; it defines ``@jupyter-widgets/base``
  and ``@jupyter-widgets/controls``);
- bqplot's and bqscales' AMD bundles, shipped by the installed Python wheels under
  ``<sys.prefix>/share/jupyter/nbextensions/{bqplot,bqscales}/index.js``.

The npm packages' tarballs are downloaded once from the npm registry over HTTPS (no npm
needed; exact versions, checked against the registry's sha512 integrity pinned below;
``$AQUEDUCT_NPM_REGISTRY`` names a mirror) into a cache directory outside git:

1. ``$AQUEDUCT_JS_CACHE`` when set;
2. else ``<sys.prefix>/share/aqueduct-usage/js`` (inside the virtualenv) when writable;
3. else ``$XDG_CACHE_HOME/aqueduct-usage/js`` (``~/.cache/aqueduct-usage/js``).

``python -m usage_lib.render.assets`` fetches them; the setup step (``scripts/setup-env``,
run by ``make serve`` and ``make test``) runs it. Nothing fetches them later: an export
never touches the network, and fails at once with `AssetsMissing` when they are absent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from jupyter_core.paths import jupyter_path

from usage_lib.errors import UsageError

ENV_CACHE = "AQUEDUCT_JS_CACHE"
ENV_REGISTRY = "AQUEDUCT_NPM_REGISTRY"  # a mirror of the npm registry
DEFAULT_REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class NpmAsset:
    package: str
    version: str
    integrity: str  # the registry's dist.integrity (sha512) of the tarball
    member: str  # the file we need inside the tarball

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def tarball(self) -> str:
        """The tarball's path on the registry: ``<package>/-/<name>-<version>.tgz``."""
        return f"{self.package}/-/{self.package.rsplit('/', 1)[-1]}-{self.version}.tgz"

    @property
    def cache_name(self) -> str:
        return f"{self.package.replace('/', '__').lstrip('@')}-{self.version}-{Path(self.member).name}"


# html-manager 1.x is the static-page manager of ipywidgets 8 (ipywidgets asks for ^1.0.1).
HTML_MANAGER = NpmAsset(
    "@jupyter-widgets/html-manager",
    "1.0.15",
    "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
    "package/dist/embed-amd.js",
)
REQUIREJS = NpmAsset(
    "requirejs",
    "2.3.8",
    "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
    "package/require.js",
)
NPM_ASSETS = (REQUIREJS, HTML_MANAGER)
# Font Awesome's woff2 fonts, which the html-manager's CSS references by file name;
# inlined as data: URIs so that an icon never makes the page ask for a file.
FONT_MEMBER = re.compile(r"package/dist/([0-9a-f]{20}\.woff2)")

WHEEL_BUNDLES = {"bqplot": "bqplot/index.js", "bqscales": "bqscales/index.js"}


class AssetsMissing(UsageError):
    """The offline JavaScript is not available and cannot be fetched."""


def cache_dir(for_writing: bool = False) -> Path:
    """Where the npm bundles live (see the module docstring for the order)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    in_prefix = Path(sys.prefix) / "share" / "aqueduct-usage" / "js"
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aqueduct-usage" / "js"
    if _complete(in_prefix):
        return in_prefix
    if _complete(user):
        return user
    if not for_writing:
        return in_prefix
    try:
        in_prefix.mkdir(parents=True, exist_ok=True)
        if os.access(in_prefix, os.W_OK):
            return in_prefix
    except OSError:
        pass
    return user


def _complete(directory: Path) -> bool:
    return all((directory / asset.cache_name).is_file() for asset in NPM_ASSETS) and (
        directory / "fonts.json"
    ).is_file()


def _check_integrity(name: str, data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        raise AssetsMissing(f"{name}: {algorithm} {digest} does not match the pinned {integrity}")


def fetch(directory: Path | None = None, *, quiet: bool = False) -> Path:
    """Download the npm bundles into `directory` (default: `cache_dir(True)`); returns it."""
    directory = directory or cache_dir(for_writing=True)
    directory.mkdir(parents=True, exist_ok=True)
    registry = (os.environ.get(ENV_REGISTRY) or DEFAULT_REGISTRY).rstrip("/")
    fonts: dict[str, str] = {}
    for asset in NPM_ASSETS:
        url = f"{registry}/{asset.tarball}"
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                data = response.read()
        except (OSError, ValueError) as exc:
            raise AssetsMissing(f"could not download {url}: {exc}") from None
        _check_integrity(asset.spec, data, asset.integrity)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.extractfile(asset.member)
            if member is None:
                raise AssetsMissing(f"{asset.spec} has no {asset.member}")
            _write(directory / asset.cache_name, member.read())
            if asset is HTML_MANAGER:
                for info in tar.getmembers():
                    match = FONT_MEMBER.fullmatch(info.name)
                    if match:
                        fonts[match.group(1)] = base64.b64encode(tar.extractfile(info).read()).decode()
    _write(directory / "fonts.json", json.dumps(fonts).encode())
    if not quiet:
        print(f"assets: {', '.join(a.spec for a in NPM_ASSETS)} -> {directory}")
    return directory


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)


def installed_assets() -> Path:
    """The cache directory holding the npm bundles; `AssetsMissing` when they are absent."""
    directory = cache_dir()
    if not _complete(directory):
        raise AssetsMissing(
            f"the JavaScript for offline HTML snapshots is not installed (looked in {directory}): "
            "run `python -m usage_lib.render.assets` once (downloads from the npm registry), or `make setup`"
        )
    return directory


def wheel_bundle(name: str) -> str:
    """bqplot's or bqscales' AMD bundle, from the installed wheel's nbextension."""
    # jupyter's own data path list covers conda, --user and system installs.
    candidates = [Path(p).parent.parent for p in jupyter_path()]
    candidates += [Path(sys.prefix), Path(sys.base_prefix), Path.home() / ".local"]
    for prefix in candidates:
        path = prefix / "share" / "jupyter" / "nbextensions" / WHEEL_BUNDLES[name]
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise AssetsMissing(f"{name}'s nbextension bundle is not installed (reinstall the {name} package)")


_SOURCE_MAP = re.compile(r"^\s*//# sourceMappingURL=.*$", re.MULTILINE)
_ANONYMOUS_DEFINE = re.compile(r"^(\s*(?:/\*.*?\*/\s*)?)define\(\[", re.DOTALL)


def _name_module(source: str, name: str) -> str:
    """Turn a webpack AMD bundle's anonymous `define([...` into `define("name", [...`."""
    named, count = _ANONYMOUS_DEFINE.subn(lambda m: f'{m.group(1)}define("{name}",[', source, count=1)
    if count != 1:
        raise AssetsMissing(f"{name}'s bundle does not start with an anonymous AMD define")
    return named


def _inline_fonts(source: str, fonts: dict[str, str]) -> str:
    """Font files referenced as `<publicPath>+"hash.ext"`: woff2 become data: URIs, the
    other formats (never chosen by a browser that reads woff2) an empty data: URI."""

    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name in fonts:
            return f'"data:font/woff2;base64,{fonts[name]}"'
        return '"data:,"'

    return re.sub(r'\b([a-zA-Z_$][\w$]*)\.p\+"([0-9a-f]{20}\.(?:woff2|woff|ttf|eot|svg))"', replace, source)


@dataclass(frozen=True)
class Bundles:
    requirejs: str
    html_manager: str
    bqplot: str
    bqscales: str

    def scripts(self) -> list[str]:
        """In page order: require.js first, then the AMD modules."""
        return [self.requirejs, self.bqscales, self.bqplot, self.html_manager]


def load_bundles() -> Bundles:
    """All four bundles, ready to inline (source maps stripped, modules named)."""
    directory = installed_assets()
    fonts = json.loads((directory / "fonts.json").read_text())

    def read(asset: NpmAsset) -> str:
        return (directory / asset.cache_name).read_text(encoding="utf-8")

    def clean(source: str) -> str:
        return _SOURCE_MAP.sub("", source)

    return Bundles(
        requirejs=clean(read(REQUIREJS)),
        html_manager=clean(_inline_fonts(read(HTML_MANAGER), fonts)),
        bqplot=clean(_name_module(wheel_bundle("bqplot"), "bqplot")),
        bqscales=clean(_name_module(wheel_bundle("bqscales"), "bqscales")),
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m usage_lib.render.assets [--force]`: download the npm bundles now."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        directory = cache_dir()
        if "--force" in argv or not _complete(directory):
            fetch(cache_dir(for_writing=True))
        else:
            print(f"assets: up to date in {directory}")
        for name in WHEEL_BUNDLES:
            wheel_bundle(name)
    except UsageError as exc:
        print(f"assets: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
