"""One list from the recent rings of every worker, exact while entries keep coming.

Why: with WORKERS above 1 each worker keeps its own last log lines and
exchanges (L{wighaven.observe.recent}), and the admin API's request lands
on any one of them. The worker answering asks the others for their part
(L{wighaven.run.peer_queries}) and merges. The rings' ids
(L{wighaven.observe.recent.TimeOrderedIds}) order every worker's entries
by time and never collide, so a merge is a sort by id; what makes it exact
is knowing where each part may be short:

  - A part is C{{"items": [...], "complete": bool, "watermark": int}}:
    the matching entries of one ring, newest first; C{complete} false when
    the ring holds more matching entries beyond those (its limit was
    reached, or the answer was cut to fit the pipe: L{trimmed}), which for
    a page of older entries are all older than its last item, and when
    following all newer than its first; C{watermark} the ring's
    L{wighaven.observe.recent._Ring.watermark}, read before listing, so
    every entry the ring keeps after the listing has a larger id.
  - L{merge_newest} (a page, newest first) keeps only entries at or below
    the lowest watermark, and none older than the oldest item of a part
    that is not complete: below that, entries of that part may be missing.
  - L{merge_following} (C{after=id}) keeps only entries at or below the
    lowest watermark and the newest item of a part that is not complete,
    and says where to follow from: everything at or below that point has
    been handed out, whichever worker keeps it, so a follower misses none
    and sees none twice.
"""

from __future__ import annotations

import json
import operator
from typing import Iterable, Optional

__all__ = ["local_part", "merge_following", "merge_newest", "trimmed", "valid_part"]

_id = operator.itemgetter("id")


def local_part(items: list, complete: bool, watermark: int) -> dict:
    """A part (see the module's doc) of a ring's listing."""
    return {"items": items, "complete": bool(complete), "watermark": int(watermark)}


def valid_part(part) -> bool:
    """C{part} has a part's shape (it came over a pipe from another worker)."""
    if not isinstance(part, dict) or type(part.get("watermark")) is not int:
        return False
    items = part.get("items")
    return (type(part.get("complete")) is bool and isinstance(items, list)
            and all(isinstance(item, dict) and type(item.get("id")) is int for item in items))


def trimmed(part: dict, max_bytes: int, following: bool) -> dict:
    """
    C{part} cut to at most about C{max_bytes} of JSON (one item at least):
    a page of older entries loses its oldest items, a following page its
    newest (the items after the ones kept); a part cut is not complete.
    """
    items = part["items"]
    sizes = [len(json.dumps(item, separators=(",", ":"))) + 1 for item in items]
    if sum(sizes) <= max_bytes:
        return part
    order = range(len(items) - 1, -1, -1) if following else range(len(items))
    kept, total = [], 0
    for index in order:
        total += sizes[index]
        if kept and total > max_bytes:
            break
        kept.append(index)
    kept.sort()
    return local_part([items[i] for i in kept], False, part["watermark"])


def _horizon(parts: Iterable[dict]) -> Optional[int]:
    marks = [part["watermark"] for part in parts]
    return min(marks) if marks else None


def merge_newest(parts: list, limit: int):
    """
    (entries newest first, next cursor): at most C{limit} of the parts'
    entries, the newest; the cursor (pass it as C{before}) is the oldest
    one's id when older entries may remain, else None.
    """
    horizon = _horizon(parts)
    floor = max((part["items"][-1]["id"] for part in parts
                 if not part["complete"] and part["items"]), default=None)
    items = sorted((item for part in parts for item in part["items"]), key=_id, reverse=True)
    items = [item for item in items if (horizon is None or item["id"] <= horizon)
             and (floor is None or item["id"] >= floor)]
    taken = items[:limit]
    more = len(items) > limit or floor is not None
    return taken, (taken[-1]["id"] if more and taken else None)


def merge_following(parts: list, after: int, limit: int):
    """
    (entries newest first, next C{after}): the oldest C{limit} of the
    parts' entries newer than C{after}, and the id to follow from next.
    """
    ceiling = _horizon(parts)
    for part in parts:
        if not part["complete"] and part["items"]:
            newest = part["items"][0]["id"]
            ceiling = newest if ceiling is None else min(ceiling, newest)
    if ceiling is None:
        return [], after
    items = sorted((item for part in parts for item in part["items"]
                    if after < item["id"] <= ceiling), key=_id)
    if len(items) > limit:
        items = items[:limit]
        next_after = items[-1]["id"]
    else:
        next_after = max(after, ceiling)
    items.reverse()
    return items, next_after
