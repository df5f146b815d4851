"""One restricted unpickler for every pickle xjax reads from a user's file.

Python's ``pickle`` runs code only through the callables it resolves by name (``GLOBAL`` /
``STACK_GLOBAL`` / ``INST`` / ``OBJ`` opcodes and the extension registry, all of which go through
``find_class``) and through ``__setstate__`` of the objects those callables return. Here
``find_class`` resolves only the names a reader allows, each to a substitute written for it, and
any other name raises the reader's own error; persistent ids are refused unless the reader handles
them. Plain data (``None``, bools, numbers, strings, bytes, lists, tuples, dicts, sets) needs no
global at all. See the "Restricting Globals" section of the ``pickle`` documentation.
"""

import io
import pickle
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Frozen", "RestrictedUnpickler", "restricted_loads"]


class Frozen:
    """Base of the objects an unpickler hands to a file: a ``BUILD`` opcode may not set their
    state (subclasses that accept a state define ``__setstate__`` and validate it)."""

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"the file tries to set the state of a {type(self).__name__}")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``allowed`` names.

    Args:
      file: a binary file object positioned at the pickle.
      allowed: ``{(module, name): substitute}``; the substitute is what the file gets (a class or
        function written by the reader, never the real global).
      refuse: ``refuse(module, name)`` returns the exception raised for any other name.
    """

    def __init__(self, file, *, allowed: Mapping[tuple[str, str], Any],
                 refuse: Callable[[str, str], Exception]):
        super().__init__(file, encoding="utf-8")
        self._allowed, self._refuse = allowed, refuse

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise self._refuse(module, name) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")


def restricted_loads(data: bytes, *, allowed: Mapping[tuple[str, str], Any] | None = None,
                     refuse: Callable[[str, str], Exception]) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (no names at all by default)."""
    return RestrictedUnpickler(io.BytesIO(data), allowed=allowed or {}, refuse=refuse).load()
