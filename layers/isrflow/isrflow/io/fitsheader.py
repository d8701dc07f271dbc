"""FITS headers without astropy: parse 2880-byte header blocks read by ranged reads.

A FITS file is a sequence of HDUs; each is a header of 2880-byte blocks of 36 cards of 80
ASCII characters, ended by an ``END`` card, followed by its data padded to a multiple of 2880
bytes. The data size follows from the header alone::

    |BITPIX| / 8 * GCOUNT * (PCOUNT + NAXIS1 * NAXIS2 * ... * NAXISn)     (0 when NAXIS = 0)

so :func:`read_hdu_headers` walks a file HDU by HDU reading only header blocks, through any
``read(offset, length) -> bytes`` callable (an S3 ranged GET, a file read), and knows where
every HDU must end. It checks that the object is FITS (:class:`NotFitsError`) and holds every
byte its headers announce (:class:`TruncatedFitsError`), without reading pixel data.

Values come back typed as astropy gives them: ``T``/``F`` -> bool, integers -> int, reals
(``E`` or ``D`` exponents) -> float, strings with quotes unescaped and trailing blanks removed,
``CONTINUE`` long strings joined; ``HIERARCH`` keywords keep their words (``ISR BIAS``).
``COMMENT``, ``HISTORY`` and blank cards are dropped; a repeated keyword keeps its last value.
Pure Python (the registry-only Lambda layer has no astropy).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from isrflow.model.errors import NotFitsError, TruncatedFitsError

BLOCK = 2880
CARD = 80
CARDS_PER_BLOCK = BLOCK // CARD

Reader = Callable[[int, int], bytes]

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?$")
_COMMENTARY = {"COMMENT", "HISTORY", ""}


@dataclass
class HduHeader:
    """One HDU: where its header starts, how long header and data are, and the parsed cards."""

    index: int
    offset: int
    header_bytes: int
    data_bytes: int
    cards: dict[str, Any] = field(default_factory=dict)

    @property
    def data_offset(self) -> int:
        return self.offset + self.header_bytes

    @property
    def end(self) -> int:
        """One past the last byte of this HDU, padding included."""
        return self.data_offset + padded(self.data_bytes)

    @property
    def is_compressed(self) -> bool:
        """A tile-compressed image (a BINTABLE with ``ZIMAGE = T``, as in ``.fits.fz`` raws)."""
        return (
            str(self.cards.get("XTENSION", "")).strip().upper() == "BINTABLE"
            and self.cards.get("ZIMAGE") is True
        )

    @property
    def is_image(self) -> bool:
        """A primary HDU, an IMAGE extension or a compressed image (what astropy calls ``is_image``)."""
        return (
            self.index == 0
            or str(self.cards.get("XTENSION", "")).strip().upper() == "IMAGE"
            or self.is_compressed
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy-order image shape (NAXISn ... NAXIS1; ZNAXISn ... of a compressed image)."""
        prefix = "ZNAXIS" if self.is_compressed else "NAXIS"
        n = int(self.cards.get(prefix, 0) or 0)
        return tuple(int(self.cards.get(f"{prefix}{i}", 0)) for i in range(n, 0, -1))

    def get(self, key: str, default: Any = None) -> Any:
        return self.cards.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.cards

    def __getitem__(self, key: str) -> Any:
        return self.cards[key]


def padded(n: int) -> int:
    """``n`` rounded up to whole 2880-byte blocks."""
    return -(-n // BLOCK) * BLOCK


def _parse_string(text: str) -> tuple[str, str]:
    """A quoted FITS string at the start of ``text`` -> (value, rest after the closing quote)."""
    out, i = [], 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out).rstrip(), text[i + 1 :]
        out.append(ch)
        i += 1
    raise ValueError("unterminated string")


def parse_value(text: str) -> Any:
    """The value part of a card (after ``= ``), comment removed, as a Python value."""
    text = text.strip()
    if text.startswith("'"):
        value, _ = _parse_string(text)
        return value
    token = text.split("/", 1)[0].strip()
    if token == "":
        return None
    if token in ("T", "F"):
        return token == "T"
    if _INT.match(token):
        return int(token)
    if _FLOAT.match(token):
        return float(token.replace("D", "E").replace("d", "e"))
    if token.startswith("("):  # complex values: kept as text
        return token
    raise ValueError(f"unparsable value {token!r}")


def parse_cards(data: bytes, where: str = "") -> tuple[dict[str, Any], int | None]:
    """Parse header cards from blocks; returns (cards, byte length up to and including the block
    holding END) or (cards so far, None) if there is no END card yet."""
    cards: dict[str, Any] = {}
    last_string_key: str | None = None
    for i in range(0, len(data) - len(data) % CARD, CARD):
        try:  # decoded card by card: the bytes after the END card may be binary data
            card = data[i : i + CARD].decode("ascii")
        except UnicodeDecodeError:
            raise NotFitsError(
                f"{where}: header card {i // CARD} has non-ASCII bytes (not FITS, or damaged)"
            ) from None
        if not card.isprintable():
            raise NotFitsError(
                f"{where}: header card {i // CARD} ({card[:8].rstrip()}) has non-printable characters "
                "(not FITS, or damaged)"
            )
        key = card[:8].rstrip()
        if key == "END" and card[8:].strip() == "":
            return cards, padded(i + CARD)
        if key in _COMMENTARY:
            continue
        if key == "CONTINUE":
            if last_string_key is not None and card[8:].lstrip().startswith("'"):
                previous = cards[last_string_key]
                piece, _ = _parse_string(card[8:].lstrip())
                cards[last_string_key] = (previous.removesuffix("&")) + piece
            continue
        if key == "HIERARCH":
            name, sep, rest = card[9:].partition("=")
            if not sep:
                continue
            key, value_text = " ".join(name.split()), rest
        elif card[8:10] == "= ":
            value_text = card[10:]
        else:
            continue  # commentary-style card without a value indicator
        try:
            value = parse_value(value_text)
        except ValueError as exc:
            raise NotFitsError(f"{where}: card {key!r}: {exc}") from None
        cards[key] = value
        last_string_key = key if isinstance(value, str) else None
    return cards, None


def data_size(cards: dict[str, Any], where: str = "") -> int:
    """Bytes of data the header announces (before padding)."""
    try:
        naxis = int(cards.get("NAXIS", 0))
        if naxis == 0:
            return 0
        bitpix = abs(int(cards["BITPIX"]))
        count = 1
        start = 2 if cards.get("GROUPS") is True and int(cards.get("NAXIS1", 0)) == 0 else 1
        for i in range(start, naxis + 1):
            count *= int(cards[f"NAXIS{i}"])
        return bitpix // 8 * int(cards.get("GCOUNT", 1)) * (int(cards.get("PCOUNT", 0)) + count)
    except (KeyError, TypeError, ValueError) as exc:
        raise NotFitsError(f"{where}: header lacks a valid BITPIX/NAXISn ({exc})") from None


def read_hdu_headers(
    read: Reader, size: int, name: str = "", *, first_blocks: int = 4, max_blocks: int = 32
) -> list[HduHeader]:
    """Walk every HDU of a FITS object of ``size`` bytes, reading header blocks only.

    ``read(offset, length)`` returns up to ``length`` bytes from ``offset``. Header blocks are
    read ``first_blocks`` at a time, doubling up to ``max_blocks`` per read while no END card
    has been seen, so a typical header costs one or two reads. Raises NotFitsError when the
    object does not start like FITS (or a header cannot be parsed) and TruncatedFitsError when
    the object ends before a header's END card or before the data (with padding) it announces.
    Bytes after the last HDU that do not start an extension are ignored (FITS special records).
    """
    if size < BLOCK:
        raise NotFitsError(f"{name}: {size} bytes is shorter than one FITS block ({BLOCK} bytes)")
    hdus: list[HduHeader] = []
    offset = 0
    while offset < size:
        where = f"{name} HDU {len(hdus)}"
        buffer = b""
        blocks = first_blocks
        header_bytes = None
        cards: dict[str, Any] = {}
        while header_bytes is None:
            want = min(blocks * BLOCK, size - offset - len(buffer))
            if want <= 0:
                raise TruncatedFitsError(
                    f"{name}: ends inside the header of HDU {len(hdus)} (no END card before byte {size})"
                )
            chunk = read(offset + len(buffer), want)
            if len(chunk) != want:
                raise TruncatedFitsError(f"{name}: short read at byte {offset + len(buffer)}")
            buffer += chunk
            if not hdus and len(buffer) >= CARD and not buffer.startswith(b"SIMPLE  ="):
                raise NotFitsError(f"{name}: does not start with a SIMPLE card (not a FITS file)")
            if hdus and len(buffer) >= CARD and buffer[:8] != b"XTENSION":
                return hdus  # trailing special records after the last HDU
            cards, header_bytes = parse_cards(buffer[: len(buffer) - len(buffer) % BLOCK], where)
            blocks = min(blocks * 2, max_blocks)
        if not hdus and cards.get("SIMPLE") is not True:
            raise NotFitsError(f"{name}: SIMPLE = {cards.get('SIMPLE')!r} (not a standard FITS file)")
        hdu = HduHeader(
            index=len(hdus),
            offset=offset,
            header_bytes=header_bytes,
            data_bytes=data_size(cards, where),
            cards=cards,
        )
        if hdu.end > size:
            raise TruncatedFitsError(
                f"{name}: truncated: HDU {hdu.index} needs {hdu.end} bytes (header + data + padding), "
                f"the object has {size}"
            )
        hdus.append(hdu)
        offset = hdu.end
    return hdus


def merged_cards(primary: HduHeader, extension: HduHeader | None) -> dict[str, Any]:
    """Primary keywords overlaid with an extension's (extension wins), as translators expect."""
    merged = dict(primary.cards)
    if extension is not None:
        merged.update(extension.cards)
    return merged


__all__ = [
    "BLOCK",
    "HduHeader",
    "Reader",
    "data_size",
    "merged_cards",
    "padded",
    "parse_cards",
    "parse_value",
    "read_hdu_headers",
]
