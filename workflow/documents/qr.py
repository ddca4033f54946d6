"""QR codes for the verification footer of official documents.

The QR code is embedded as a 1-bit ``data:image/png`` URI at one pixel per
module; the stylesheet scales it up with ``image-rendering: pixelated``, which
WeasyPrint writes as ``/Interpolate false`` so viewers and printers keep the
modules sharp.  Measured in WeasyPrint 70 for a 37x37 code: the PNG adds
~0.8 KB to the PDF, the SVG variant (segno's single stroked ``<path>``) ~1.4 KB,
at the same speed (~20 ms), so PNG it is.  See docs/DOCUMENTS.md.

The renderer only lets WeasyPrint load ``data:`` URIs produced by this module:
:func:`qr_data_uri` is deterministic, so the renderer regenerates the URI from
``verify_url`` and compares.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache

import segno

#: Error correction level "M" (15 %): survives printing and a seal stamped nearby.
ERROR_LEVEL = "m"

#: Quiet zone in modules (the footer leaves white space around the code anyway).
BORDER = 2


@lru_cache(maxsize=512)
def qr_data_uri(text: str) -> str:
    """Return ``text`` encoded as a QR code in a ``data:image/png;base64`` URI."""
    if not isinstance(text, str) or not text:
        raise ValueError("QR code text must be a non-empty string")
    qrcode = segno.make(text, error=ERROR_LEVEL, boost_error=False, micro=False)
    buffer = io.BytesIO()
    qrcode.save(buffer, kind="png", scale=1, border=BORDER)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
