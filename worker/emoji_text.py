"""Finding emoji in a message for ``!jumbo``: the first of its three steps, with its error.

``parse_emoji`` finds custom emoji (``<:name:id>``, ``<a:name:id>``, standalone ids) and
unicode emoji in order; the unicode data and sequence matching (flags, keycaps, skin tones, ZWJ
sequences) are the ``emoji`` package's, kept current with Unicode releases rather than written
here. Fetching the images is ``emoji_fetch``'s, enlarging them ``emoji_compose``'s: each step
changes for its own reasons (Discord's markup, the CDNs, Pillow).

``EmojiError`` is here, with the first step, and raised by all three: every message is a
sentence meant for the Discord user who asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import emoji

# Standalone: whitespace or the text's ends on both sides, so a mention (<@id>), a channel
# (<#id>) or a role (<@&id>) is not taken for an emoji id. The markup's id is not checked for
# length: a malformed one is answered by the CDN's 404, a clearer error than "no emoji found".
_CUSTOM = re.compile(
    r"<(?P<animated>a?):(?P<name>[A-Za-z0-9_]{1,32}):(?P<id>[0-9]{1,20})>"
    r"|(?<!\S)(?P<bare>[0-9]{17,20})(?!\S)"
)
_ZWJ = "\u200d"
_VARIATION_SELECTOR_16 = "\ufe0f"


class EmojiError(ValueError):
    """Why a jumbo was refused, as a sentence for the Discord user who asked."""


@dataclass(frozen=True, slots=True)
class EmojiRef:
    """One emoji found in a text."""

    name: str  # custom: its name (a bare id: the id as text); unicode: the emoji itself
    emoji_id: int | None  # None for unicode emoji
    animated: bool  # <a:...>; a bare id is fetched as a GIF, which keeps any animation
    codepoints: str  # unicode: twemoji's file name, like "1f1fa-1f1f8"; custom: ""

    @property
    def label(self) -> str:
        """How error messages name it: the custom emoji's id, or the unicode emoji itself."""
        return self.name if self.emoji_id is None else str(self.emoji_id)


def parse_emoji(text: str, limit: int) -> list[EmojiRef]:
    """The emoji of ``text`` in order of appearance; other text is ignored.

    Raises EmojiError when there is none, or more than ``limit``.
    """
    refs: list[EmojiRef] = []
    position = 0
    for match in _CUSTOM.finditer(text):
        refs.extend(_unicode_emoji(text[position : match.start()]))
        refs.append(_custom_emoji(match))
        position = match.end()
    refs.extend(_unicode_emoji(text[position:]))
    if not refs:
        raise EmojiError("no emoji found in the text")
    if len(refs) > limit:
        raise EmojiError(f"found {len(refs)} emoji; the limit is {limit}")
    return refs


def twemoji_name(text: str) -> str:
    """Twemoji's file name for an emoji string: hex codepoints joined by "-".

    Twemoji drops U+FE0F unless the sequence has a zero-width joiner ("❤️" is "2764", but
    "🏳️‍🌈" is "1f3f3-fe0f-200d-1f308").
    """
    if _ZWJ not in text:
        text = text.replace(_VARIATION_SELECTOR_16, "")
    return "-".join(f"{ord(char):x}" for char in text)


def _custom_emoji(match: re.Match[str]) -> EmojiRef:
    if match["bare"] is not None:
        return EmojiRef(match["bare"], int(match["bare"]), animated=False, codepoints="")
    return EmojiRef(match["name"], int(match["id"]), bool(match["animated"]), codepoints="")


def _unicode_emoji(text: str) -> list[EmojiRef]:
    return [
        EmojiRef(found["emoji"], None, animated=False, codepoints=twemoji_name(found["emoji"]))
        for found in emoji.emoji_list(text)
    ]
