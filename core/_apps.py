"""ClientApp and ServerApp: the user's code, registered with decorators."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeAlias

from ._context import Context
from ._errors import ConfigurationError
from ._message import Message, validate_message_type

if TYPE_CHECKING:  # pragma: no cover
    from ._grid import Grid

Handler: TypeAlias = Callable[[Message, Context], Message]
MainFunction: TypeAlias = Callable[["Grid", Context], object]
Mod: TypeAlias = Callable[[Message, Context, Handler], Message]
"""A ClientApp mod (Flower's): ``mod(msg, context, call_next) -> reply``."""
Lifespan: TypeAlias = Callable[[Context], Iterator[None]]


def _with_mods(handler: Handler, mods: list[Mod]) -> Handler:
    """``handler`` wrapped in ``mods``, the first one outermost (Flower's order)."""
    for mod in reversed(mods):
        handler = (lambda m, inner: lambda msg, ctx: m(msg, ctx, inner))(mod, handler)
    return handler


def _lifespan_decorator(owner: ClientApp | ServerApp) -> Callable[[Lifespan], Lifespan]:
    def decorator(fn: Lifespan) -> Lifespan:
        owner._lifespan = contextlib.contextmanager(fn)
        return fn

    return decorator


class ClientApp:
    """The code a node runs for a run: one handler per message type.

    Example::

        app = ClientApp()

        @app.train()
        def train(msg: Message, context: Context) -> Message:
            ...
            return msg.create_reply(RecordDict({...}))

        @app.train("finetune")          # handles message type "train.finetune"
        def finetune(msg, context): ...
    """

    def __init__(self, mods: list[Mod] | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        self._mods: list[Mod] = list(mods or [])
        self._lifespan: Callable[[Context], contextlib.AbstractContextManager[None]] = lambda _: (
            contextlib.nullcontext()
        )

    def _register(
        self, category: str, action: str, mods: list[Mod] | None
    ) -> Callable[[Handler], Handler]:
        message_type = category if not action else f"{category}.{action}"
        validate_message_type(message_type)

        def decorator(fn: Handler) -> Handler:
            if message_type in self._handlers:
                raise ValueError(f"a handler for {message_type!r} is already registered")
            self._handlers[message_type] = _with_mods(fn, [*self._mods, *(mods or [])])
            return fn

        return decorator

    def train(
        self, action: str = "", *, mods: list[Mod] | None = None
    ) -> Callable[[Handler], Handler]:
        """Register a handler for ``"train"`` (or ``"train.<action>"``) messages.

        ``mods`` wrap this handler only, inside the app's own mods.
        """
        return self._register("train", action, mods)

    def evaluate(
        self, action: str = "", *, mods: list[Mod] | None = None
    ) -> Callable[[Handler], Handler]:
        """Register a handler for ``"evaluate"`` (or ``"evaluate.<action>"``) messages."""
        return self._register("evaluate", action, mods)

    def query(
        self, action: str = "", *, mods: list[Mod] | None = None
    ) -> Callable[[Handler], Handler]:
        """Register a handler for ``"query"`` (or ``"query.<action>"``) messages."""
        return self._register("query", action, mods)

    def lifespan(self) -> Callable[[Lifespan], Lifespan]:
        """Register ``fn(context)`` that yields once around every message (Flower's)."""
        return _lifespan_decorator(self)

    @property
    def message_types(self) -> list[str]:
        """The message types this app handles."""
        return list(self._handlers)

    def handler_for(self, message_type: str) -> Handler | None:
        """Return the handler of ``message_type``, or None if there is none."""
        return self._handlers.get(message_type)

    def __call__(self, message: Message, context: Context) -> Message:
        """Handle ``message``; the reply must be a :class:`Message`.

        Raises:
            LookupError: no handler for the message's type.
            TypeError: the handler returned something other than a Message.
        """
        handler = self._handlers.get(message.metadata.message_type)
        if handler is None:
            raise LookupError(
                f"this ClientApp has no handler for {message.metadata.message_type!r}; "
                f"it handles {self.message_types}"
            )
        with self._lifespan(context):
            reply = handler(message, context)
        if not isinstance(reply, Message):
            raise TypeError(
                f"the {message.metadata.message_type!r} handler returned "
                f"{type(reply).__name__}; return message.create_reply(RecordDict(...))"
            )
        return reply


class ServerApp:
    """The code that drives a run: a main function taking a Grid and a Context.

    Example::

        app = ServerApp()

        @app.main()
        def main(grid: Grid, context: Context) -> None:
            node_ids = grid.get_node_ids()
            ...
    """

    def __init__(self) -> None:
        self._main: MainFunction | None = None
        self._lifespan: Callable[[Context], contextlib.AbstractContextManager[None]] = lambda _: (
            contextlib.nullcontext()
        )

    def lifespan(self) -> Callable[[Lifespan], Lifespan]:
        """Register ``fn(context)`` that yields once around the main function (Flower's)."""
        return _lifespan_decorator(self)

    def main(self) -> Callable[[MainFunction], MainFunction]:
        """Register the main function ``(grid, context) -> None``."""

        def decorator(fn: MainFunction) -> MainFunction:
            if self._main is not None:
                raise ValueError("this ServerApp already has a main function")
            self._main = fn
            return fn

        return decorator

    def __call__(self, grid: Grid, context: Context) -> None:
        """Run the main function.

        Raises:
            ConfigurationError: no main function was registered.
        """
        if self._main is None:
            raise ConfigurationError(
                "this ServerApp has no main function; decorate one with @app.main()"
            )
        with self._lifespan(context):
            self._main(grid, context)
