"""The master's table of intents is hikari's, name for name and bit for bit."""

from __future__ import annotations

import hikari

from sharder.intents import INTENTS, intent_value


def test_the_table_is_hikaris() -> None:
    hikaris = {intent.name: int(intent) for intent in hikari.Intents if intent.name != "NONE"}
    assert hikaris == INTENTS


def test_names_combine_into_their_bits() -> None:
    expected = hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT
    assert intent_value(["ALL_UNPRIVILEGED", "MESSAGE_CONTENT"]) == int(expected)
    assert intent_value([]) == 0
