"""What a client id may be: 1..256 bytes, each a visible ASCII character (0x21..0x7E).

Letters, digits and punctuation only: no space, tab or other control character, and nothing
outside ASCII, so an id reads the same in logs, metrics labels, file names and rosters, and
two ids that look alike are the same bytes (no Unicode normalisation question). Being ASCII,
its length in bytes equals its length in characters.
"""

from __future__ import annotations

import re

MAX_CLIENT_ID_BYTES = 256
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


def client_id_problem(client_id: str, max_bytes: int = MAX_CLIENT_ID_BYTES) -> str:
    """Why `client_id` is not a valid id ("" when it is)."""
    size = len(client_id.encode("utf-8", errors="surrogatepass"))
    if not 1 <= size <= max_bytes:
        return f"client_id must be 1..{max_bytes} bytes, got {size}"
    if not _VISIBLE_ASCII.fullmatch(client_id):
        bad = next(c for c in client_id if not "\x21" <= c <= "\x7e")
        return (
            f"client_id may hold only visible ASCII characters (0x21..0x7E: letters, digits, "
            f"punctuation), not {bad!r} (U+{ord(bad):04X})"
        )
    return ""


def check_client_id(client_id: str, max_bytes: int = MAX_CLIENT_ID_BYTES) -> None:
    """Raise `ValueError` naming the rule when `client_id` is not a valid id."""
    problem = client_id_problem(client_id, max_bytes)
    if problem:
        raise ValueError(problem)
