"""Public name of the sync protocol's wire codec; see :mod:`asyncmachine.rpc._wire`.

Usage::

    from asyncmachine.rpc.wire import SetClock, decode
"""

from ._wire import *  # noqa: F403
from ._wire import __all__ as __all__
