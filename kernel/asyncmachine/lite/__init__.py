"""The offline JupyterLite site that ``am-demo`` serves, and its build.

The site runs with no internet. It ships its own copy of Pyodide, the wheels
that its kernel loads at start, and these wheels as Pyodide packages, so that a
plain ``import NAME`` in a cell loads them:

- asyncmachine, written from the imported package without ``lite/site-src``
  (and without amrepl, which the browser does not use);
- rpyc, graphviz (the Python package, which builds DOT), ipywidgets and comm;
- lite_graphviz, which renders DOT to SVG with Graphviz compiled to
  WebAssembly (the npm package @hpcc-js/wasm-graphviz).

The kernel preloads these, its own packages and IPython while Pyodide starts
(``loadPyodideOptions.packages`` in ``site-src/jupyter-lite.json``). Each
wheel's file name carries its content hash as the build tag, so browsers may
cache the wheels for good.

The site's sources are in ``site-src/``: the JupyterLite config, the bar notebook
(``files/bar.ipynb``) and the lite_graphviz project. They ship as package data,
so an installed asyncmachine builds the same site as a source checkout.

The build needs Python 3.11+ and Node.js 18+ with npm. The first build also
needs PyPI and the npm registry: it installs jupyterlite-core and
jupyterlite-pyodide-kernel into its own virtual environment in the cache folder
and downloads the pinned wheels and npm packages there. Later builds reuse the
cache. The site folder contains a stamp with a hash of the inputs (the pinned
versions and every file of the asyncmachine package), and the build is skipped
while that hash still matches.

The default folders are ``build/lite`` and ``build/lite-cache`` in a source
checkout, and otherwise ``lite`` and ``lite-cache`` in
``$XDG_CACHE_HOME/asyncmachine`` (by default ``~/.cache/asyncmachine``).

Usage::

    python -m asyncmachine.lite                    # build the site if needed
    python -m asyncmachine.lite --out DIR --force  # rebuild it into DIR

or from code, with the progress on stderr::

    from asyncmachine.lite import ensure_site

    site_dir = ensure_site()

This package is for the server side: neither ``import asyncmachine`` nor the
browser's code imports it.
"""

from ._build import BuildError, default_cache_dir, default_out_dir, ensure_site

__all__ = ["BuildError", "default_cache_dir", "default_out_dir", "ensure_site"]
