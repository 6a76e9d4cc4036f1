"""Keeping ExceptionGroups from crossing the public boundary."""

from __future__ import annotations

from typing import cast

import anyio

__all__ = ["unwrap_group"]


def unwrap_group(exc: BaseException) -> BaseException:
    """The single real error inside (nested) exception groups, ignoring cancellations.

    A group holding several real errors is returned as it is.
    """
    cancelled = anyio.get_cancelled_exc_class()
    current: BaseException = exc
    while isinstance(current, BaseExceptionGroup):
        members = cast(tuple[BaseException, ...], current.exceptions)
        real = [e for e in members if not isinstance(e, cancelled)]
        if len(real) != 1:
            return current if real else members[0]  # pyright: ignore[reportUnknownVariableType]
        current = real[0]
    return current
