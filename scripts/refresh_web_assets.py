"""Vendor the GraphiQL, Swagger UI and ECharts assets into the package, from the npm registry.

Usage: ``python scripts/refresh_web_assets.py [FOLDER…]`` (needs ``npm``; no folder: every
bundle). Edit ``BUNDLES`` to move a version, run the script, then check the pages
(``tests/e2e/test_browser.py``, ``tests/e2e/test_dashboard.py``).

Government networks are often offline, so the GraphiQL page (``/graphql``), each
service's API page (``/api/<service>/docs``) and the leaders' dashboard (``/dashboard``)
load nothing from a CDN: every script, stylesheet and icon they use is a file in the
package, copied here from the exact npm package version pinned below, with that
package's licence next to it. Each folder gets an
``ASSETS.json`` naming the package, version and source path of every file with its
SHA-256, which a test checks against the files.

The GraphiQL versions are the ones strawberry's own GraphiQL page was written for
(``services/gateway/graphiql.html`` is adapted from it): React 18 is the last React with
UMD builds, which that page loads with plain ``<script>`` tags.

ECharts' single-file build bundles zrender (BSD-3-Clause) and a few functions derived from
d3 (BSD-3-Clause, ``licenses/LICENSE-d3``): their licence texts go next to it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Package:
    """One npm package: which of its files go where (``source path -> file name``)."""

    name: str
    version: str
    files: dict[str, str]
    # The licence text: a file of this package, or (package, path) of another one when
    # the package ships none of its own (it then comes from the same repository).
    licence: str | tuple[str, str] = "LICENSE"
    extra_notices: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def slug(self) -> str:
        return self.name.removeprefix("@").replace("/", "-")


BUNDLES: dict[Path, list[Package]] = {
    ROOT / "services" / "gateway" / "static" / "graphiql": [
        Package("react", "18.2.0", {"umd/react.production.min.js": "react.production.min.js"}),
        Package(
            "react-dom",
            "18.2.0",
            {"umd/react-dom.production.min.js": "react-dom.production.min.js"},
        ),
        Package(
            "graphiql",
            "3.8.3",
            {"graphiql.min.js": "graphiql.min.js", "graphiql.min.css": "graphiql.min.css"},
        ),
        Package(
            "@graphiql/plugin-explorer",
            "1.0.2",
            {
                "dist/index.umd.js": "plugin-explorer.umd.js",
                "dist/style.css": "plugin-explorer.css",
            },
            # MIT per its package.json; it ships no licence file. It is built in the
            # graphql/graphiql repository, whose MIT licence graphiql ships.
            licence=("graphiql", "LICENSE"),
        ),
    ],
    ROOT / "services" / "common" / "static" / "swagger-ui": [
        Package(
            "swagger-ui-dist",
            "5.35.0",
            {
                "swagger-ui-bundle.js": "swagger-ui-bundle.js",
                "swagger-ui.css": "swagger-ui.css",
                "favicon-32x32.png": "favicon-32x32.png",
            },
            extra_notices={
                "NOTICE": "swagger-ui-dist.NOTICE.txt",
                "swagger-ui-bundle.js.LICENSE.txt": "swagger-ui-bundle.js.LICENSE.txt",
            },
        ),
    ],
    ROOT / "services" / "gateway" / "static" / "dashboard": [
        Package(
            "echarts",
            "6.1.0",
            {"dist/echarts.min.js": "echarts.min.js"},
            extra_notices={
                "NOTICE": "echarts.NOTICE.txt",
                "licenses/LICENSE-d3": "echarts-d3.LICENSE.txt",
            },
        ),
        # No file of its own: echarts.min.js bundles it (the version echarts 6.1.0 pins).
        Package("zrender", "6.1.0", {}),
    ],
}


def npm_pack(spec: str, into: Path) -> Path:
    """Download one package tarball with npm (which checks the registry's integrity)."""
    out = subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(into), spec],
        check=True,
        capture_output=True,
        text=True,
    )
    tarball = into / out.stdout.strip().splitlines()[-1]
    unpacked = into / tarball.name.removesuffix(".tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(unpacked, filter="data")
    return unpacked / "package"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refresh(folder: Path, packages: list[Package], work: Path) -> None:
    unpacked = {p.name: npm_pack(p.spec, work) for p in packages}
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    manifest: dict[str, dict[str, dict[str, str]]] = {}
    for package in packages:
        source = unpacked[package.name]
        wanted = dict(package.files)
        wanted.update(package.extra_notices)
        if isinstance(package.licence, str):
            wanted[package.licence] = f"{package.slug}.LICENSE.txt"
        entries: dict[str, dict[str, str]] = {}
        for path, name in wanted.items():
            shutil.copyfile(source / path, folder / name)
            entries[name] = {"from": path, "sha256": sha256(folder / name)}
        if isinstance(package.licence, tuple):
            owner, path = package.licence
            other = next(p for p in packages if p.name == owner)
            name = f"{package.slug}.LICENSE.txt"
            shutil.copyfile(unpacked[owner] / path, folder / name)
            entries[name] = {"from": f"{other.spec}/{path}", "sha256": sha256(folder / name)}
        manifest[package.spec] = entries
    (folder / "ASSETS.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"{folder.relative_to(ROOT)}: {', '.join(manifest)}")


def main(names: list[str]) -> None:
    """Refresh every bundle, or only the folders named (``dashboard``, ``graphiql``, …)."""
    if shutil.which("npm") is None:
        sys.exit("npm is needed to fetch the packages from the npm registry")
    unknown = set(names) - {folder.name for folder in BUNDLES}
    if unknown:
        sys.exit(f"no bundle named {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as tmp:
        for folder, packages in BUNDLES.items():
            if not names or folder.name in names:
                refresh(folder, packages, Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:])
