"""User names that cannot impersonate: the normal form a name is kept in, and the key under
which look-alike names collide (docs/protocol.md, Profiles and finding people).

`normal` is Unicode NFKC, so that "ｂｏｂ" (full width) is kept as "bob". `key` goes further,
for comparing only: case folded, accents and invisible characters dropped, and letters of
other scripts (and digits) that look like Latin letters mapped to them, in the spirit of
Unicode's confusable skeletons (UTS #39) but with a small table of the common ones.
"""

import unicodedata

# Letters (after case folding) that look like a Latin letter in common fonts.
LOOK_ALIKES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
    "ј": "j", "ԁ": "d", "ѕ": "s", "һ": "h", "ԛ": "q", "ԝ": "w", "ӏ": "l", "к": "k",
    "м": "m", "т": "t", "в": "b", "н": "h",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "κ": "k", "ι": "i", "ε": "e",
    "υ": "u", "χ": "x", "β": "b", "μ": "u",
    "0": "o", "1": "l", "ı": "i", "ł": "l",
})


def normal(name: str) -> str:
    """The form a name is kept in."""
    return unicodedata.normalize("NFKC", name)


def key(name: str) -> str:
    """Equal for names a reader could take for one another."""
    folded = unicodedata.normalize("NFKD", normal(name).casefold())
    kept = "".join(ch for ch in folded
                   if unicodedata.category(ch) not in ("Mn", "Me", "Cf"))
    return unicodedata.normalize("NFKC", kept.translate(LOOK_ALIKES))
