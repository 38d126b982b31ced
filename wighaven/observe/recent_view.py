"""The admin API's recent log lines and exchanges: this process's, and every worker's.

Why one place: the admin API lists, pages and follows the recent rings
(L{wighaven.observe.recent}) with one code path whether the gateway is
one process or several workers. A listing is a question (C{what}, a
C{query} of plain JSON values) answered by every ring that holds a part
of the answer: this process's at once (L{RecentView.answer}), the other
workers' through their supervisor when there are some (C{peers}, a
L{wighaven.run.peer_queries.PeerQueries}, set by the worker; None alone),
and the parts are merged exactly (L{wighaven.observe.recent_merge}).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer

from .recent_merge import local_part, merge_following, merge_newest, trimmed, valid_part

__all__ = ["RecentView"]

LOGS, REQUESTS, REQUEST = "logs", "requests", "request"


class RecentView:
    """
    @param requests: the site's L{wighaven.observe.recent.RequestRing}.
    @param logs: the process's L{wighaven.observe.recent.LogRing}.
    @ivar peers: the other workers' (None: none).
    @ivar part_max_bytes: a part answered to another worker is cut to this much JSON.
    """

    def __init__(self, requests, logs, part_max_bytes: int = 1 << 20):
        self._requests = requests
        self._logs = logs
        self.peers = None
        self.part_max_bytes = part_max_bytes

    def answer(self, what: str, query: dict) -> Optional[dict]:
        """This process's part for a question of another worker (cut to fit its pipe)."""
        part = self._part(what, query)
        return trimmed(part, self.part_max_bytes, query.get("after") is not None)

    def _part(self, what: str, query: dict) -> dict:
        if what == REQUEST:
            entry = self._requests.get(query["id"])
            return local_part([] if entry is None else [entry], True, 0)
        # Read before listing: whatever is kept after it has a larger id.
        if what == LOGS:
            watermark = self._logs.watermark()
            items, cursor = self._logs.lines(
                level=query.get("level"), text=query.get("text"), after=query.get("after"),
                before=query.get("before"), limit=query["limit"])
        elif what == REQUESTS:
            watermark = self._requests.watermark()
            items, cursor = self._requests.list(
                route=query.get("route"), status_class=query.get("status_class"),
                user=query.get("user"), before=query.get("before"), limit=query["limit"])
        else:
            raise ValueError("unknown question %r" % (what,))
        if query.get("after") is not None:
            complete = len(items) < query["limit"]
        else:
            complete = cursor is None
        return local_part(items, complete, watermark)

    @defer.inlineCallbacks
    def _gather(self, what: str, query: dict):
        own = self._part(what, query)
        parts = [own]
        if self.peers is not None:
            if what != REQUEST:
                # The others answer later, with entries kept meanwhile: what this
                # part's watermark leaves out of the merge anyway. Bounded by it,
                # their parts are made of what the merge can use: the entries
                # up to it (under load, a worker's newest page may all be later).
                bound = own["watermark"] + 1
                before = query.get("before")
                query = dict(query, before=bound if before is None else min(before, bound))
            parts.extend(part for part in (yield self.peers.ask(what, query))
                         if valid_part(part))
        return parts

    @defer.inlineCallbacks
    def logs(self, level=None, text=None, after=None, before=None, limit=100):
        """
        (lines newest first, next cursor, last id) of every worker: with
        C{after}, the next cursor is the C{after} to pass next time and the
        last id is it too; without, the next cursor is the C{before} of the
        next older page (None: no more) and the last id where following
        this page starts.
        """
        query = {"level": level, "text": text, "after": after, "before": before,
                 "limit": limit}
        parts = yield self._gather(LOGS, query)
        if after is not None:
            items, next_after = merge_following(parts, after, limit)
            return items, next_after, next_after
        items, cursor = merge_newest(parts, limit)
        return items, cursor, min(part["watermark"] for part in parts)

    @defer.inlineCallbacks
    def requests(self, route=None, status_class=None, user=None, before=None, limit=100):
        """(exchanges newest first, the next older page's cursor or None) of every worker."""
        query = {"route": route, "status_class": status_class, "user": user,
                 "before": before, "limit": limit}
        parts = yield self._gather(REQUESTS, query)
        return merge_newest(parts, limit)

    @defer.inlineCallbacks
    def request(self, entry_id: int):
        """The exchange of C{entry_id}, whichever worker keeps it; None when none does."""
        parts = yield self._gather(REQUEST, {"id": entry_id})
        for part in parts:
            if part["items"]:
                return part["items"][0]
        return None
