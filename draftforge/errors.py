"""The one exception type a user can cause.

Anything the user can get wrong (unknown GPU, bad shape, malformed recipe, missing file, corrupt
profile, ...) raises `DraftforgeError` with one sentence that says what was wrong and what to do.
The CLI prints that sentence and exits with code 2; programming errors are left to raise normally.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DraftforgeError(Exception):
    """A problem the user can fix; its message is one clear sentence."""


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to `name` (for 'did you mean' messages)."""
    known = list(known)
    matches = difflib.get_close_matches(name.lower(), known, n=n, cutoff=0.4)
    if not matches:
        matches = [k for k in known if name.lower()[:3] in k][:n]
    return matches


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> DraftforgeError:
    known = sorted(known)
    near = closest(name, known)
    hint = f"; closest: {', '.join(near)}" if near else f"; known: {', '.join(known)}"
    return DraftforgeError(f"unknown {kind} {name!r}{hint}")
