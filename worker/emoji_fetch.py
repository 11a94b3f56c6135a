"""Fetching emoji images for ``!jumbo``: the network half, run in the compute worker's process.

``EmojiFetcher`` fetches the images from Discord's CDN and a twemoji-style CDN (the simulator
serves both) with a timeout, a size cap, a byte-bounded LRU cache and one request per URL
however many ask at once. Apart from composing (``emoji_compose``), which runs in the compute
sandbox where there is no network.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from worker.emoji_text import EmojiError, EmojiRef, parse_emoji


@dataclass(frozen=True, slots=True)
class EmojiSources:
    """Where emoji images come from, and how long and how large a fetch may be."""

    custom_base: str  # e.g. "https://cdn.discordapp.com/emojis/"
    unicode_base: str  # e.g. "https://cdn.jsdelivr.net/gh/jdecked/twemoji@15.1.0/assets/72x72/"
    timeout: float = 5.0  # per fetch, seconds
    max_bytes: int = 2 * 1024 * 1024  # per image


def emoji_url(ref: EmojiRef, sources: EmojiSources) -> str:
    """The image URL of an emoji.

    A bare id does not say whether the emoji is animated, so it is fetched as a GIF: Discord
    serves a static emoji's GIF as one frame and an animated one's with all its frames.
    """
    if ref.emoji_id is None:
        return f"{sources.unicode_base}{ref.codepoints}.png"
    extension = "gif" if ref.animated or ref.name == str(ref.emoji_id) else "png"
    return f"{sources.custom_base}{ref.emoji_id}.{extension}"


class EmojiFetcher:
    """Fetches emoji images over one lazily made HTTP session, with a cache of their bytes.

    ``hits`` counts fetches answered without a new request (from the cache, or by joining a
    request already in flight for the same URL); ``misses`` counts requests sent.
    """

    def __init__(self, sources: EmojiSources, cache_bytes: int = 32 * 1024 * 1024) -> None:
        self.sources = sources
        self.cache_bytes = cache_bytes
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._in_flight: dict[str, asyncio.Task[bytes]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, ref: EmojiRef) -> bytes:
        """The image bytes of ``ref``; raises EmojiError naming the emoji and the reason."""
        url = emoji_url(ref, self.sources)
        body = self._cache.get(url)
        if body is not None:
            self._cache.move_to_end(url)
            self.hits += 1
            return body
        task = self._in_flight.get(url)
        if task is None:
            self.misses += 1
            task = asyncio.get_running_loop().create_task(self._download(ref, url))
            self._in_flight[url] = task
            task.add_done_callback(lambda _: self._in_flight.pop(url, None))
        else:
            self.hits += 1
        # Shielded: one caller giving up must not cancel the request the others wait for.
        return await asyncio.shield(task)

    async def fetch_all(self, refs: Sequence[EmojiRef]) -> list[bytes]:
        """The images of ``refs``, fetched concurrently, in order.

        Every fetch is waited for (each is bounded by the timeout), so that the error raised is
        always the first failing emoji's in text order.
        """
        results = await asyncio.gather(*(self.fetch(ref) for ref in refs), return_exceptions=True)
        images: list[bytes] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            images.append(result)
        return images

    async def close(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _download(self, ref: EmojiRef, url: str) -> bytes:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.sources.timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.get(url) as response:
                body = await self._read_body(ref, response)
        except TimeoutError:
            message = f"fetching emoji {ref.label} timed out after {self.sources.timeout} s"
            raise EmojiError(message) from None
        except aiohttp.ClientError as exc:
            raise EmojiError(f"could not fetch emoji {ref.label}: the CDN did not answer") from exc
        self._remember(url, body)
        return body

    async def _read_body(self, ref: EmojiRef, response: aiohttp.ClientResponse) -> bytes:
        if response.status == 404:
            raise EmojiError(f"emoji {ref.label} not found on the CDN (HTTP 404)")
        if response.status != 200:
            raise EmojiError(f"the CDN answered HTTP {response.status} for emoji {ref.label}")
        limit = self.sources.max_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise EmojiError(
                f"the image of emoji {ref.label} is {_size(declared)}; the limit is {_size(limit)}"
            )
        # Counted as well: a body may be chunked, compressed, or longer than it declared.
        body = bytearray()
        while len(body) <= limit:
            chunk = await response.content.read(limit + 1 - len(body))
            if not chunk:
                return bytes(body)
            body += chunk
        raise EmojiError(
            f"the image of emoji {ref.label} is larger than the limit of {_size(limit)}"
        )

    def _remember(self, url: str, body: bytes) -> None:
        if len(body) > self.cache_bytes:
            return
        self._cache[url] = body
        self._cached_bytes += len(body)
        while self._cached_bytes > self.cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= len(evicted)


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB".replace(".0 ", " ")
    return f"{count / (1024 * 1024):.1f} MiB".replace(".0 ", " ")


async def fetch_emoji_images(
    text: str, fetcher: EmojiFetcher, limit: int
) -> tuple[list[EmojiRef], list[bytes]]:
    """The emoji of ``text`` and their images: the network half of a jumbo.

    ``compose`` is the other half; the caller runs it where there is no network.
    """
    refs = parse_emoji(text, limit)
    return refs, await fetcher.fetch_all(refs)
