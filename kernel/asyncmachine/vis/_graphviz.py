"""Import of the graphviz package, with an ImportError naming the install command."""

from __future__ import annotations

try:
    import graphviz
except ImportError as err:  # pragma: no cover - the vis extra installs it
    raise ImportError(
        "asyncmachine.vis needs the graphviz Python package; install it with "
        "pip install 'asyncmachine[vis]'"
    ) from err

__all__ = ["graphviz"]
