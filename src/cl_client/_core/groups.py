"""Keeping ExceptionGroups from crossing the public boundary."""

from __future__ import annotations

from types import TracebackType
from typing import Self, cast

import anyio

__all__ = ["HeldError", "unwrap_group"]


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


class HeldError:
    """Keeps an exception away from a task group, to raise it again after the group has closed.

    For a class whose lifecycle is an ``@asynccontextmanager`` generator (on
    ``anyio.AsyncContextManagerMixin``) that owns a task group: an error of its setup, or of the
    caller's block (thrown in at the ``yield``), would leave the task group wrapped in an
    ExceptionGroup (both backends wrap the host task's error). ::

        held = HeldError()
        async with anyio.create_task_group() as tg:
            with held:
                try:
                    ...  # setup
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        held.reraise()

    The task group then closes as if nothing had been raised in it (a cancellation is held
    too, like any other exception), and ``reraise()`` raises the held exception itself:
    unwrapped, with its cause and context untouched.
    """

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.error = exc
        return exc is not None

    def reraise(self) -> None:
        """Raise the held exception, if any (and forget it)."""
        error, self.error = self.error, None
        if error is not None:
            raise error
