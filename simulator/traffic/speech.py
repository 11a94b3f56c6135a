"""What users say: chatter, and the bot's commands (ping, math, jumbo) with arguments worth
computing, and the nicknames they pick.

Every draw comes from the plan's one random source, in a fixed order, so what is said is as
repeatable as who says it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping
from typing import Final

from simulator.traffic.spec import CONTENT_KINDS, cumulative_weights
from simulator.world import WORDS

UNICODE_EMOJI: Final = ("😀", "🎉", "❤️", "👍", "🔥")
CHATTER_WORDS: Final = (
    *WORDS,
    "hello", "anyone", "around", "today", "tonight", "lol", "gg", "nice", "ok", "why",
    "the", "a", "is", "was", "ship", "it", "build", "broke", "again", "thanks",
)  # fmt: skip
OPERATORS: Final = ("+", "-", "*", "/")


class Speech:
    def __init__(self, random: Callable[[], float], contents: Mapping[str, float]) -> None:
        self._random = random
        self._contents, self._content_totals = cumulative_weights(contents, CONTENT_KINDS)

    def message(self, custom_emoji: tuple[str, ...]) -> str:
        """A message's content; ``custom_emoji`` are its guild's, in message syntax."""
        rand = self._random
        kind = self._contents[
            bisect_right(
                self._content_totals,
                rand() * self._content_totals[-1],
                0,
                len(self._contents) - 1,
            )
        ]
        if kind == "chatter":
            words = CHATTER_WORDS
            return " ".join(words[int(rand() * len(words))] for _ in range(1 + int(rand() * 6)))
        if kind == "ping":
            return "!ping"
        if kind == "math":
            return f"!math {self.expression()}"
        unicode = UNICODE_EMOJI[int(rand() * len(UNICODE_EMOJI))]
        if not custom_emoji:
            return f"!jumbo {unicode}"
        custom = custom_emoji[int(rand() * len(custom_emoji))]
        shape = rand()  # a custom emoji alone, a unicode one alone, or both
        if shape < 0.4:
            return f"!jumbo {custom}"
        if shape < 0.6:
            return f"!jumbo {unicode}"
        return f"!jumbo {unicode} {custom}"

    def expression(self) -> str:
        """A small arithmetic expression with a whole result: "2+2", "(3*7)-4", "12/4"."""
        rand = self._random
        left, right = 1 + int(rand() * 12), 1 + int(rand() * 12)
        operator = OPERATORS[int(rand() * len(OPERATORS))]
        if operator == "/":
            left *= right  # divide evenly
        simple = f"{left}{operator}{right}"
        if rand() < 0.5:
            return simple
        outer = OPERATORS[int(rand() * 3)]  # no outer division: it might not come out whole
        return f"({simple}){outer}{1 + int(rand() * 12)}"

    def nick(self) -> str | None:
        rand = self._random
        if rand() < 0.25:
            return None  # the nickname is cleared
        return f"{WORDS[int(rand() * len(WORDS))]}_{int(rand() * 1000)}"
