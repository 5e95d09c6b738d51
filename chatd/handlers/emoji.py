"""Is a reaction one emoji? A small grammar of emoji sequences, not the Unicode data files.

One emoji is a flag (two regional indicators), a keycap (0-9, # or * with VS16 and the
combining keycap), a tag sequence (a black flag and tag letters), or pictographs joined by
ZERO WIDTH JOINER, each with an optional skin tone and VS16. Everything else (text,
combining marks, several emoji) is refused. MAX_BYTES bounds the UTF-8 length: the longest
family sequences in use are 25 bytes.
"""

MAX_BYTES = 32
ZWJ = 0x200D
VS16 = 0xFE0F
KEYCAP = 0x20E3
BLACK_FLAG = 0x1F3F4
TAG_END = 0xE007F
SKIN_TONES = range(0x1F3FB, 0x1F400)
REGIONAL = range(0x1F1E6, 0x1F200)
TAGS = range(0xE0020, 0xE007F)
# Code points that are pictographs (Extended_Pictographic, rounded to whole blocks where a
# block is mostly pictographs).
PICTOGRAPHS = (
    range(0x1F000, 0x1FB00), range(0x2600, 0x27C0), range(0x2190, 0x2200),
    range(0x2300, 0x2400), range(0x25A0, 0x2600), range(0x2B05, 0x2B08),
    range(0x2B1B, 0x2B1D), range(0x2934, 0x2936),
)
SINGLE_PICTOGRAPHS = frozenset({0xA9, 0xAE, 0x203C, 0x2049, 0x2122, 0x2139, 0x24C2, 0x2B50,
                                0x2B55, 0x3030, 0x303D, 0x3297, 0x3299})


def is_one_emoji(text: str) -> bool:
    """True when `text` is exactly one emoji of at most MAX_BYTES bytes of UTF-8."""
    if not text or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return False
    points = [ord(ch) for ch in text]
    return _flag(points) or _keycap(points) or _tagged(points) or _joined(points)


def _flag(points: list[int]) -> bool:
    return len(points) == 2 and all(p in REGIONAL for p in points)


def _keycap(points: list[int]) -> bool:
    return (len(points) in (2, 3) and chr(points[0]) in "0123456789#*"
            and points[-1] == KEYCAP and (len(points) == 2 or points[1] == VS16))


def _tagged(points: list[int]) -> bool:
    return (len(points) >= 3 and points[0] == BLACK_FLAG and points[-1] == TAG_END
            and all(p in TAGS for p in points[1:-1]))


def _pictograph(point: int) -> bool:
    return (point in SINGLE_PICTOGRAPHS or any(point in block for block in PICTOGRAPHS)) \
        and point not in SKIN_TONES and point not in REGIONAL


def _joined(points: list[int]) -> bool:
    """Pictograph [skin tone] [VS16], then (ZWJ and another such element) any times."""
    i, n = 0, len(points)
    while True:
        if i >= n or not _pictograph(points[i]):
            return False
        i += 1
        if i < n and points[i] in SKIN_TONES:
            i += 1
        if i < n and points[i] == VS16:
            i += 1
        if i == n:
            return True
        if points[i] != ZWJ:
            return False
        i += 1
