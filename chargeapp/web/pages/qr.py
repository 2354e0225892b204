"""QR codes drawn on the server as SVG (segno: pure Python, nothing fetched), for the lounge board's TV."""
from __future__ import annotations

from functools import lru_cache

import segno


@lru_cache(maxsize=256)
def qr_data_uri(text: str) -> str:
    """``text`` as a QR code in a ``data:image/svg+xml`` URI: black on white with the 4-module quiet zone
    a phone's camera needs, a viewBox instead of a size (the page's CSS sizes it, crisp at any size), and
    error correction M or better (segno raises it while the code stays the same size)."""
    return segno.make(text, error="m").svg_data_uri(border=4, dark="#000", light="#fff", omitsize=True)
