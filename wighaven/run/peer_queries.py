"""A worker's questions to the other workers, through their supervisor.

Why: with WORKERS above 1, what only each worker knows (its recent log
lines and exchanges, for the admin panel) must come from all of them
whichever worker an admin's request reaches. No other server is
involved: the question travels the pipes that already carry the figures
(L{wighaven.run.cluster}), as one JSON line each way:

    worker -> supervisor   {"ask": {"id", "what", "query"}}
    supervisor -> others   {"ask": {"from": slot, "id", "what", "query"}}
    other -> supervisor    {"answer": {"from", "id", "part"}}
    supervisor -> worker   {"part": {"id", "part"}} for each answer, then
                           {"gathered": {"id"}} once all have answered,
                           or after GATHER_TIMEOUT, or when none is left

An answer's C{part} is what L{PeerQueries.answerer} gives (the recent
view's, see L{wighaven.observe.recent_view}, which cuts it to 1 MiB of
JSON, far below a pipe line's limit, L{wighaven.run.cluster.MAX_LINE}),
or null when it has nothing to say. Nothing is asked while no
admin asks: the forwarding path pays nothing for this. A worker that
does not answer in time (hung, restarting) is left out of that answer;
the asking worker gives up itself after L{ASK_TIMEOUT} should its
supervisor say nothing, and keeps at most L{MAX_PENDING} questions open
(more are answered from its own ring alone).
"""

from __future__ import annotations

import itertools
from typing import Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger

__all__ = ["ASK_TIMEOUT", "GATHER_TIMEOUT", "MAX_PENDING", "PeerQueries", "valid_ask"]

GATHER_TIMEOUT = 1.0  # the supervisor's wait for the others' answers
ASK_TIMEOUT = 2.0  # the asking worker's own limit, should its supervisor say nothing
MAX_PENDING = 64


def valid_ask(ask) -> bool:
    """An ask message's body is a dict with an int id, a str what and a dict query."""
    return (isinstance(ask, dict) and type(ask.get("id")) is int
            and isinstance(ask.get("what"), str) and isinstance(ask.get("query"), dict))


class PeerQueries:
    """
    A worker's end of the questions (see the module's doc).

    @param send: C{send(message)}: writes one message to the supervisor.
    @param clock: the reactor (C{callLater}).
    @ivar answerer: C{answerer(what, query)}: this worker's part for
        another worker's question (a dict of JSON values) or None; set by
        whoever keeps what is asked (None: nothing to say).
    """

    _log = Logger()

    def __init__(self, send: Callable[[dict], object], clock):
        self._send = send
        self._clock = clock
        self._ids = itertools.count(1)
        self._pending = {}  # id -> (parts, Deferred, timer)
        self.answerer: Optional[Callable[[str, dict], Optional[dict]]] = None

    def ask(self, what: str, query: dict) -> defer.Deferred:
        """The other workers' parts (a list, possibly empty) for C{what} and C{query}."""
        if len(self._pending) >= MAX_PENDING:
            return defer.succeed([])
        ask_id = next(self._ids)
        done = defer.Deferred()
        timer = self._clock.callLater(ASK_TIMEOUT, self._gathered, ask_id)
        self._pending[ask_id] = ([], done, timer)
        try:
            self._send({"ask": {"id": ask_id, "what": what, "query": query}})
        except Exception:  # no supervisor to write to (its end closed): only this worker's
            self._gathered(ask_id)
        return done

    def received(self, message) -> bool:
        """Take C{message} if it is one of these (True), else leave it to the caller (False)."""
        if not isinstance(message, dict):
            return False
        if "ask" in message:
            self._answer(message["ask"])
        elif "part" in message:
            body = message["part"]
            pending = self._pending.get(body.get("id")) if isinstance(body, dict) else None
            if pending is not None and isinstance(body.get("part"), dict):
                pending[0].append(body["part"])
        elif "gathered" in message:
            body = message["gathered"]
            if isinstance(body, dict):
                self._gathered(body.get("id"))
        else:
            return False
        return True

    def _answer(self, ask) -> None:
        if not valid_ask(ask) or type(ask.get("from")) is not int:
            return
        part = None
        if self.answerer is not None:
            try:
                part = self.answerer(ask["what"], ask["query"])
            except Exception:
                # A question it can't answer (another version's, a bad query):
                # it says nothing, and the asker goes on without it.
                self._log.failure("a question from worker {slot} went unanswered",
                                  slot=ask["from"])
        self._send({"answer": {"from": ask["from"], "id": ask["id"], "part": part}})

    def _gathered(self, ask_id) -> None:
        pending = self._pending.pop(ask_id, None)
        if pending is None:
            return
        parts, done, timer = pending
        if timer.active():
            timer.cancel()
        done.callback(parts)

    def close(self) -> None:
        """The supervisor is gone: every open question ends with what it has."""
        for ask_id in list(self._pending):
            self._gathered(ask_id)
