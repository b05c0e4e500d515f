"""A logical key stored twice, as ``k`` (direct) and ``k.delta``: which copy counts (pure rules).

Two writers of different kinds may store one key at the same time, and each then deletes the
other kind's copy if it is older than its own.  A delete may hit a copy stored after the HEAD
that decided it, so both copies could go.  Hence a writer that deleted looks at its own copy
again and stores it once more if it went.  That cannot end with neither: of two writers A and B
that each delete, the one whose final look at its own copy comes later (say B) sees its copy gone
only if A's delete hit it, which came before A's final look, which therefore came after B stored
and so found A's copy there unless B's delete came before that look, in which case A stores again.
A reader that finds both copies serves the newer one.
"""

from __future__ import annotations

from datetime import datetime

Rank = tuple[datetime | None, str | None]


def newer_copy(delta: Rank, direct: Rank) -> str:
    """``"delta"`` or ``"direct"``: the copy a reader serves, by (``LastModified``,
    ``dg-created-at``); a tie goes to the delta."""

    def rank(copy: Rank) -> tuple[float, str]:
        moment, created = copy
        return (moment.timestamp() if moment else 0.0, created or "")

    return "direct" if rank(direct) > rank(delta) else "delta"
