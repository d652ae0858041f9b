"""Where chat features declare what they answer: commands, buttons and multi-step flows.

A feature module registers its handlers with the decorators below; the router only looks them
up. Button data is "<name>" or "<name>:<arg>:<arg>..." (at most 64 bytes, Telegram's limit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chat.context import Context
    from chat.flows import Flow

CommandHandler = Callable[["Context", str], None]  # (ctx, text after the command)
ButtonHandler = Callable[["Context", list[str]], None]  # (ctx, arguments)

COMMANDS: dict[str, CommandHandler] = {}
DEEP_LINKS: dict[str, CommandHandler] = {}  # "/start <prefix><rest>" → handler(ctx, rest)
BUTTONS: dict[str, ButtonHandler] = {}
FLOWS: dict[str, Flow] = {}


class StaleButton(Exception):
    """A button whose data no longer means anything here (an old menu, forged data, a changed
    offer): the user gets a friendly note and a fresh menu."""


class NotAllowed(Exception):
    """The user may not do this (not an admin, not the owner). Shown like a stale button, so a
    forged id reveals nothing."""


def command(*names: str):
    def register(handler: CommandHandler) -> CommandHandler:
        for name in names:
            if name in COMMANDS:
                raise ValueError(f"command /{name} registered twice")
            COMMANDS[name] = handler
        return handler

    return register


def deep_link(prefix: str):
    def register(handler: CommandHandler) -> CommandHandler:
        DEEP_LINKS[prefix] = handler
        return handler

    return register


def button(name: str):
    def register(handler: ButtonHandler) -> ButtonHandler:
        if name in BUTTONS or ":" in name:
            raise ValueError(f"button {name!r} registered twice or has a colon")
        BUTTONS[name] = handler
        return handler

    return register


def flow(instance: Flow) -> Flow:
    if instance.name in FLOWS:
        raise ValueError(f"flow {instance.name!r} registered twice")
    FLOWS[instance.name] = instance
    return instance


def data(name: str, *args: object) -> str:
    """Button data for a handler and its arguments; checked against Telegram's 64-byte limit."""
    value = ":".join([name, *(str(a) for a in args)])
    if len(value.encode()) > 64:
        raise ValueError(f"button data too long: {value!r}")
    return value
