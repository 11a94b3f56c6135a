"""Gateway transport compression: one stream per connection, flushed after every payload.

``zlib-stream`` ends each message with a sync flush (``00 00 ff ff``), ``zstd-stream`` with a
block flush inside one zstd frame; both go out as BINARY frames. Without compression the
payloads go out as TEXT frames, as Discord sends them.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Final

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

NONE: Final = "none"
ZLIB_STREAM: Final = "zlib-stream"
ZSTD_STREAM: Final = "zstd-stream"
MODES: Final = (NONE, ZLIB_STREAM, ZSTD_STREAM)

Compress = Callable[[bytes], bytes]


def stream_compressor(mode: str) -> Compress | None:
    """The per-connection compressor for a ``compress=`` query value; None means TEXT frames."""
    if mode == NONE:
        return None
    if mode == ZLIB_STREAM:
        deflate = zlib.compressobj()

        def compress_zlib(payload: bytes) -> bytes:
            return deflate.compress(payload) + deflate.flush(zlib.Z_SYNC_FLUSH)

        return compress_zlib
    if mode == ZSTD_STREAM:
        compressor = zstd.ZstdCompressor()

        def compress_zstd(payload: bytes) -> bytes:
            return compressor.compress(payload, zstd.ZstdCompressor.FLUSH_BLOCK)

        return compress_zstd
    raise ValueError(f"unknown compression {mode!r}; expected one of {', '.join(MODES)}")
