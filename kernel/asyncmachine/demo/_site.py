"""The offline JupyterLite site that the demo serves: find it, build it if needed.

The build (``scripts/build_lite.py`` of a source checkout) needs npm and the
package registries once, then reuses its cache. It skips itself while a stamp
in the site matches a hash of its inputs, so calling it on every start costs
about a second when nothing changed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["BUILD_SCRIPT", "SiteError", "default_site_dir", "ensure_site"]

# kernel/asyncmachine/demo/_site.py -> the repository root.
_SOURCE_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = _SOURCE_ROOT / "scripts" / "build_lite.py"
"""The site's build script; it exists only in a source checkout."""


class SiteError(Exception):
    """The site is missing and cannot be built; the message names the next step."""


def default_site_dir() -> Path:
    """Return the checkout's ``build/lite``, where ``make lite`` builds the site."""
    return _SOURCE_ROOT / "build" / "lite"


def ensure_site(site_dir: Path | None) -> Path:
    """Return a built site: `site_dir` as it is, or the checkout's, built if needed.

    Building prints its progress to stderr.

    Raises:
        SiteError: `site_dir` has no index.html, or the build failed or is
            impossible (no source checkout).
    """
    if site_dir is not None:
        if not (site_dir / "index.html").is_file():
            raise SiteError(
                f"{site_dir} is not a built JupyterLite site (no index.html); "
                "build one with `make lite`, or leave out --site"
            )
        return site_dir

    target = default_site_dir()
    if not BUILD_SCRIPT.is_file():
        raise SiteError(
            f"the offline site is not built and this installation has no build "
            f"script ({BUILD_SCRIPT} is missing); run am-demo from a source "
            "checkout once, or pass --site DIR with a site built by `make lite`"
        )
    print(f"am-demo: checking the offline site in {target}", file=sys.stderr)
    try:
        completed = subprocess.run(
            [sys.executable, str(BUILD_SCRIPT), "--out", str(target)],
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except OSError as err:
        raise SiteError(f"cannot run {BUILD_SCRIPT}: {err}") from err
    if completed.returncode != 0:
        raise SiteError(
            f"building the offline site failed (exit code {completed.returncode}); "
            "the lines above name the failed step. Fix it and run am-demo "
            "again, or pass --site DIR with a built site"
        )
    return target
