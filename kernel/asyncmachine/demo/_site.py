"""The offline JupyterLite site that the demo serves: find it, build it if needed.

The build (:mod:`asyncmachine.lite`) needs npm and the package registries once,
then reuses its cache. It skips itself while a stamp in the site matches a hash
of its inputs, so calling it on every start costs about a second when nothing
changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .. import lite

__all__ = ["SiteError", "ensure_site"]


class SiteError(Exception):
    """The site is missing and cannot be built; the message names the next step."""


def ensure_site(site_dir: Path | None) -> Path:
    """Return a built site: `site_dir` as it is, or the default one, built if needed.

    The default site is build/lite in a source checkout, where ``make lite``
    builds it, and otherwise ``$XDG_CACHE_HOME/asyncmachine/lite``. Building
    prints its progress to stderr.

    Raises:
        SiteError: `site_dir` has no index.html, or the build failed.
    """
    if site_dir is not None:
        if not (site_dir / "index.html").is_file():
            raise SiteError(
                f"{site_dir} is not a built JupyterLite site (no index.html); "
                "leave out --site and am-demo builds its own, or build one "
                f"with: {sys.executable} -m asyncmachine.lite --out DIR"
            )
        return site_dir

    target = lite.default_out_dir()
    print(f"am-demo: checking the offline site in {target}", file=sys.stderr)
    try:
        return lite.ensure_site(target)
    except lite.BuildError as err:
        raise SiteError(
            f"building the offline site failed: {err}\n"
            "Run am-demo again after the fix, or pass --site DIR with a built site."
        ) from err
