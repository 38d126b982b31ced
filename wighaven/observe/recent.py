"""The last log lines and the last exchanges, in memory, for the admin panel.

Rule: two bounded rings (a C{collections.deque} with C{maxlen}: memory is
bounded whatever the rate), read newest first with cursor pagination by
id, everything in them plain JSON (str, int, float, None, lists, dicts).
No I/O and no reactor: time comes from a C{clock} callable (default
C{time.time}). Not wired into the gateway yet; an admin panel's JSON API
will list them, page through them and follow them live.

  - L{LogRing} is a twisted.logger observer keeping the last C{size} log
    lines. Place it behind the same LOG_LEVEL filter as the log itself
    (L{LogRing.filtered}): the ring then never holds more than the log
    does, and since the gateway never logs secrets (see
    L{wighaven.observe.logs}: headers are never logged), neither does
    the ring. As defence in depth, the strings of its C{secrets} (the
    tokens the gateway knows) are still replaced by "[redacted]" in each
    line. A failure shows only its type and error message, never its
    traceback; a text longer than MAX_TEXT characters is cut with a
    marker.
  - L{RequestRing} keeps the last C{size} exchanges as summarized by
    L{exchange_summary}: credentials in the headers are redacted
    (L{redact_headers}).

Ids only grow, one per entry in order of arrival, so a cursor is just an
id: C{before=id} pages to older entries, C{after=id} fetches the newer
ones when following (see L{_Ring.page} for the next cursor of each). A
follower that sees an id skipped can fetch it with C{after}. The gateway
gives its rings L{TimeOrderedIds}: ids that also order the entries of
every worker of one gateway by time, unique across them, so that the
admin API can merge the workers' rings into one list
(L{wighaven.observe.recent_merge}); by default (tests) they are
consecutive from 1 (L{ConsecutiveIds}). Cost of a listing: finding the
cursor is a binary search on the ids; the scan then walks entries newest
first (oldest first after C{after}) and stops at C{limit} matches, so
without a filter it visits C{limit} entries, and with a filter at most
the whole ring (C{size} entries, 2,000 at most by default) whatever the
traffic.

The entries handed out (listings, L{RequestRing.get}, subscribers) are
the ring's own dicts: read them, don't change them.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import os
import threading
import time
from collections import deque
from typing import Callable, Iterable, Optional

from twisted.logger import FilteringLogObserver, LogLevel, formatEvent

from ..config.settings import MAX_WORKERS
from .exchange_log import REDACTED as _REDACTED_BYTES
from .exchange_log import SECRET_HEADERS
from .logs import level_predicate

__all__ = [
    "CUT_MARKER", "ConsecutiveIds", "LogRing", "MAX_TEXT", "REDACTED", "RequestRing",
    "SECRET_HEADERS", "TimeOrderedIds", "WORKER_SLOT_ENV", "exchange_summary", "process_ids",
    "redact_headers", "redact_text",
]

REDACTED = _REDACTED_BYTES.decode("ascii")
MAX_TEXT = 4096  # characters of a log line's text; more is cut
CUT_MARKER = " [cut: %d more characters]"
LOG_RING_SIZE = 2000
REQUEST_RING_SIZE = 1000
_LEVEL_RANK = {level.name: rank for rank, level in enumerate(LogLevel.iterconstants())}
_STATUS_CLASSES = frozenset("%dxx" % n for n in range(1, 6))


# The environment variable a worker's supervisor gives it: its slot, from
# 0 (internal: set by wighaven.run.cluster, never by hand).
WORKER_SLOT_ENV = "WIGHAVEN_WORKER_SLOT"
SLOTS = MAX_WORKERS  # 64: the slot is an id's last 6 bits
_EPOCH = 1767225600.0  # 2026-01-01T00:00:00Z
_UNITS_PER_SECOND = 100000  # 10 us


class ConsecutiveIds:
    """Ids 1, 2, 3...: a ring's own, for a ring no other process's is merged with."""

    def __init__(self):
        self._last = 0

    def __next__(self) -> int:
        self._last += 1
        return self._last

    def watermark(self) -> int:
        """An id that every id given from now on exceeds: the last one given."""
        return self._last


class TimeOrderedIds:
    """
    Ids from the time an entry is kept, unique across the workers of one
    gateway, so that the workers' rings merge into one list ordered by
    time: (10 us units since 2026) * 64 + C{slot}. They only grow (two
    entries of the same 10 us take consecutive units; a clock set back
    holds them where they were until it catches up), and stay below
    2**53 until 2070, so a browser's JSON numbers hold them exactly.

    L{watermark} is what makes a merge exact while entries keep coming: no
    id given after it was read is at or below it.
    """

    def __init__(self, slot: int = 0, clock: Callable[[], float] = time.time):
        if not 0 <= slot < SLOTS:
            raise ValueError("slot must be from 0 to %d" % (SLOTS - 1))
        self._slot = slot
        self._clock = clock
        self._last = 0

    def _now_units(self) -> int:
        return max(0, int((self._clock() - _EPOCH) * _UNITS_PER_SECOND))

    def __next__(self) -> int:
        # One per forwarded exchange with AUTH on: written out, no call but the clock's.
        now = int((self._clock() - _EPOCH) * _UNITS_PER_SECOND) * SLOTS + self._slot
        last = self._last + SLOTS
        self._last = last = now if now > last else last
        return last

    def watermark(self) -> int:
        """An id that every id given from now on exceeds (by the clock, or the last one given)."""
        return max(self._last, self._now_units() * SLOTS + self._slot - 1)


def process_ids(environ=None) -> TimeOrderedIds:
    """The ids of a ring of this process: time-ordered, in its supervisor's slot (0 alone)."""
    environ = os.environ if environ is None else environ
    try:
        slot = int(environ.get(WORKER_SLOT_ENV, "0"))
    except ValueError:
        slot = 0
    return TimeOrderedIds(slot if 0 <= slot < SLOTS else 0)


def _as_texts(secrets: Iterable) -> tuple:
    """C{secrets} (bytes or str) as non-empty str, longest first."""
    texts = []
    for secret in secrets or ():
        if isinstance(secret, bytes):
            secret = secret.decode("latin-1")
        if secret:
            texts.append(secret)
    return tuple(sorted(set(texts), key=len, reverse=True))


def redact_text(text: str, secrets: tuple) -> str:
    """C{text} with every one of C{secrets} (str) replaced by "[redacted]"."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_headers(raw_headers, secrets: Iterable = ()) -> list:
    """
    [name, value] pairs as text (latin-1) from C{raw_headers}, (name,
    [values]) pairs of bytes or str as L{twisted.web.http_headers.Headers.
    getAllRawHeaders} gives them, or [name, value] pairs as LOG_BODIES
    captures them: every value of a SECRET_HEADERS name
    (any case) becomes "[redacted]", and C{secrets} (the tokens) are
    redacted from the others. Order and duplicates are kept.
    """
    secrets = _as_texts(secrets)
    out = []
    for name, values in raw_headers:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(values, (bytes, str)):  # a [name, value] pair
            values = (values,)
        secret = name.lower() in SECRET_HEADERS
        shown_name = name.decode("latin-1")
        for value in values:
            if secret:
                out.append([shown_name, REDACTED])
                continue
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            out.append([shown_name, redact_text(value, secrets)])
    return out


class _Ring:
    """
    Items with growing ids (C{ids}: L{ConsecutiveIds} unless given) in a
    bounded deque, and their listing.

    Each item carries its id (L{_id_of}), given in order of arrival.
    Listings work on a snapshot of the deque (taken at once under the
    GIL, again in the rare case another thread appended meanwhile), so
    that keeping an item never waits for a reader. Subclasses say what a
    listing hands out: L{_ready} prepares an item before a filter looks at
    it, L{_views} turns the items picked into the entries handed out.
    """

    def __init__(self, size: int, clock: Callable[[], float], ids=None):
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._clock = clock
        self._entries = deque(maxlen=size)
        self._ids = ConsecutiveIds() if ids is None else ids

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _id_of(item) -> int:
        raise NotImplementedError

    @property
    def last_id(self) -> int:
        """The newest entry's id (0 when empty)."""
        try:
            return self._id_of(self._entries[-1])
        except IndexError:
            return 0

    def watermark(self) -> int:
        """
        Where a follower starts (C{after}): an id every entry kept from
        now on exceeds, at least the newest entry's.
        """
        return self._ids.watermark()

    def _position(self, entries: tuple, entry_id: int) -> int:
        """The index in C{entries} of the first entry whose id is C{entry_id} or more."""
        return bisect.bisect_left(entries, entry_id, key=self._id_of)

    def _snapshot(self) -> tuple:
        while True:
            try:
                return tuple(self._entries)
            except RuntimeError:  # another thread appended while it was copied
                continue

    def _ready(self, item) -> None:
        """Make C{item} ready for the filters."""

    def _views(self, items: list) -> list:
        """The entries handed out for C{items}."""
        return items

    def _get(self, entry_id):
        try:
            entry_id = int(entry_id)
        except (TypeError, ValueError):
            return None
        entries = self._snapshot()
        index = self._position(entries, entry_id)
        if index == len(entries) or self._id_of(entries[index]) != entry_id:
            return None
        item = entries[index]
        self._ready(item)
        return self._views([item])[0]

    def page(self, match, after=None, before=None, limit=100):
        """
        (entries newest first, next cursor) of the items C{match} accepts
        (None: all), at most C{limit} (capped at the ring's size).

        Without C{after}: the newest ones older than C{before} (all without
        it); the next cursor is the oldest one's id to pass as C{before}
        for the next older page, or None when the ring is exhausted.

        With C{after}: the oldest ones newer than C{after} (and older than
        C{before} when given too), the ones right after the cursor so a
        follower misses none; the next cursor is the id to pass as
        C{after} next time: the newest id looked at, C{after} itself when
        there was nothing new. Lines evicted before they were fetched are
        gone: a follower far behind resumes at the oldest kept.
        """
        limit = int(limit)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        limit = min(limit, self.size)
        after = None if after is None else int(after)
        before = None if before is None else int(before)
        entries = self._snapshot()
        if not entries:
            return [], (after if after is not None else None)
        ready = self._ready
        found = []
        first = self._id_of(entries[0])
        # entries[:end] are those older than before.
        end = len(entries) if before is None else self._position(entries, before)
        if after is not None:
            cursor = after
            # Oldest first from the first one newer than after.
            for item in itertools.islice(entries, self._position(entries, after + 1), end):
                cursor = self._id_of(item)
                ready(item)
                if match is None or match(item):
                    found.append(item)
                    if len(found) == limit:
                        break
            found.reverse()
            return self._views(found), cursor
        if end == 0:
            return [], None
        # Newest first from the last one older than before.
        for item in reversed(entries[:end]):
            ready(item)
            if match is None or match(item):
                found.append(item)
                if len(found) == limit:
                    break
        more = bool(found) and len(found) == limit and self._id_of(found[-1]) > first
        return self._views(found), (self._id_of(found[-1]) if more else None)


# Events whose values are all of these are formatted when read, not when
# logged (the same text: the values can't change); any other value (a
# failure, an object, a list) and the line is formatted at once, so that
# the ring never holds on to what an event refers to.
_PLAIN_TYPES = frozenset([str, int, float, bool, bytes, type(None)])
# Not kept with an event formatted later (its level and namespace are):
# the logger and the object that logged (which they would keep alive).
_NOT_KEPT = ("log_logger", "log_source", "log_level")


class LogRing(_Ring):
    """
    A twisted.logger observer keeping the last C{size} log lines, each
    C{{"id", "time", "level", "namespace", "text"}}: C{time} the event's
    own (epoch seconds; the clock's when it has none), C{level} one of
    debug, info, warn, error, critical, C{text} the formatted message
    (with a failure's type and message, never its traceback), secrets
    redacted, cut at MAX_TEXT characters.

    Give it the events LOG_LEVEL lets through only: use
    L{filtered}(level), not the ring itself, as the observer.

    Cost: formatting an event takes longer than the rest of a small
    forwarded request (some 15 us for an access line), so a line is
    formatted when it is first read (or at once when a subscriber is
    there, or when its values are not all plain str, bytes, int, float,
    bool or None); until then the ring keeps a copy of the event's plain
    fields and the secrets in force. Keeping a line costs about 1 us.

    @param secrets: strings (bytes or str: the tokens) to redact from
        every line; L{set_secrets} replaces them (a route reload), and
        L{set_secrets_source} adds the current ones of a source.
    """

    def __init__(self, size: int = LOG_RING_SIZE, secrets: Iterable = (),
                 clock: Callable[[], float] = time.time, ids=None):
        super().__init__(size, clock, ids)
        self._secrets = _as_texts(secrets)
        self._secrets_source = None
        self._subscribers = {}
        self._subscription_ids = itertools.count()
        self._delivering = threading.local()
        self._last_event = None
        # Log events may come from other threads: one at a time takes the
        # next id and its place, so that the deque stays in order of ids.
        self._lock = threading.Lock()

    _id_of = staticmethod(operator.itemgetter("id"))

    def watermark(self) -> int:
        # Under the lock: a line of another thread taking its id meanwhile
        # is then either below it and kept already, or above it.
        with self._lock:
            return self._ids.watermark()

    def set_secrets(self, secrets: Iterable) -> None:
        """Redact C{secrets} from now on (lines already kept were redacted with the old ones)."""
        self._secrets = _as_texts(secrets)

    def set_secrets_source(self, source: Optional[Callable[[], Iterable]]) -> None:
        """
        Redact as well what C{source}() gives (the route table's current
        tokens, bytes or str) when a line is formatted: lines kept but not
        yet read are then redacted with the tokens of when they are read
        too, besides those in force when they were logged. None: no source.
        """
        self._secrets_source = source

    def filtered(self, level: str) -> FilteringLogObserver:
        """This ring behind the LOG_LEVEL filter of C{level}: the observer to register."""
        return FilteringLogObserver(self, [level_predicate(level)])

    def _current_secrets(self, secrets: tuple) -> tuple:
        source = self._secrets_source
        if source is None:
            return secrets
        try:
            more = _as_texts(source())
        except Exception:  # a source that fails must not lose the line
            more = ()
        if not more:
            return secrets
        return tuple(sorted(set(secrets) | set(more), key=len, reverse=True))

    def _text(self, event, secrets: tuple) -> str:
        text = formatEvent(event)
        if not text and event.get("log_text"):
            text = str(event["log_text"])
        failure = event.get("log_failure")
        if failure is not None:
            try:
                kind = getattr(failure.type, "__name__", None) or str(failure.type)
                described = "%s: %s" % (kind, failure.getErrorMessage())
            except Exception:  # a failure that cannot even describe itself
                described = "(failure)"
            text = "%s: %s" % (text, described) if text else described
        text = redact_text(text, self._current_secrets(secrets))
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT] + CUT_MARKER % (len(text) - MAX_TEXT)
        return text

    def _ready(self, line: dict) -> None:
        pending = line["text"]
        if type(pending) is tuple:  # (the event's plain fields, the secrets of then)
            line["text"] = self._text(*pending)

    def __call__(self, event) -> None:
        if event is self._last_event:
            return  # the same event once more: two observers feed this ring
        self._last_event = event
        level = getattr(event.get("log_level"), "name", None)
        line = {
            "id": None,
            "time": float(event.get("log_time") or self._clock()),
            "level": level if level in _LEVEL_RANK else "info",
            "namespace": str(event.get("log_namespace") or "-"),
            "text": None,
        }
        kept = None
        if not self._subscribers:
            format = event.get("log_format")
            if type(format) is str and "log_" not in format:
                kept = event.copy()
                for key in _NOT_KEPT:
                    kept.pop(key, None)
                if not _PLAIN_TYPES.issuperset(map(type, kept.values())):
                    kept = None
        if kept is None:
            line["text"] = self._text(event, self._secrets)
        else:
            line["text"] = (kept, self._secrets)
        with self._lock:
            line["id"] = next(self._ids)
            self._entries.append(line)
        if kept is None:
            self._deliver(line)

    def _deliver(self, line: dict) -> None:
        # A line a subscriber logs while being told of another is kept but
        # not pushed: pushing it could recurse without end. The subscriber
        # can fetch it (its id is skipped) with lines(after=...).
        if not self._subscribers or getattr(self._delivering, "busy", False):
            return
        self._delivering.busy = True
        try:
            for key, callback in list(self._subscribers.items()):
                try:
                    callback(line)
                except Exception:
                    # Logging about it from here would come back here: just drop it.
                    self._subscribers.pop(key, None)
        finally:
            self._delivering.busy = False

    def subscribe(self, callback: Callable[[dict], object]) -> Callable[[], None]:
        """
        Call C{callback}(line) for each new line, in the thread that logged
        it (the reactor's, mostly); a callback that raises is dropped.
        Returns the function that unsubscribes it (safe to call twice).
        """
        key = next(self._subscription_ids)
        self._subscribers[key] = callback

        def unsubscribe() -> None:
            self._subscribers.pop(key, None)

        return unsubscribe

    def lines(self, level: Optional[str] = None, text: Optional[str] = None,
              after=None, before=None, limit: int = 100):
        """
        (lines newest first, next cursor): lines at C{level} (a level name)
        and above, whose text contains C{text} (case-insensitive); cursors
        and limit as in L{_Ring.page}.
        """
        tests = []
        if level is not None:
            if level not in _LEVEL_RANK:
                raise ValueError("unknown level %r" % (level,))
            least = _LEVEL_RANK[level]
            tests.append(lambda line: _LEVEL_RANK.get(line["level"], 0) >= least)
        if text:
            wanted = text.casefold()
            tests.append(lambda line: wanted in line["text"].casefold())
        return self.page(_all(tests), after, before, limit)


def _all(tests):
    if not tests:
        return None
    return lambda entry: all(test(entry) for test in tests)


def _text_of(value, default=None):
    if value is None:
        return default
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


# An exchange as kept (L{exchange_record}, L{RequestRing.record_exchange}),
# a tuple of: its id, what the listing filters on, then the rest.
_ID, _ROUTE, _STATUS, _USER = 0, 1, 2, 3
(_REQUEST_ID, _METHOD, _PATH, _DURATION, _CLIENT, _REQUEST_HEADERS, _RESPONSE_HEADERS,
 _WHEN) = range(4, 12)


def _user_of(seen):
    return getattr(getattr(seen, "identity", None), "user", None)


def exchange_record(request, status: Optional[int], duration: float, path,
                    client: Optional[str] = None) -> tuple:
    """
    What L{exchange_summary} needs of an exchange, nothing decoded or
    redacted yet (L{summary_of} does that): a tuple of an id and a time
    (None: L{RequestRing} gives them), the route's name, the status, the
    user, the request id, method, path, duration and client as given, the
    request's raw headers and the response's (see L{exchange_summary}) as
    lists of pairs.
    """
    live = getattr(request, "live_route", None)
    seen = getattr(request, "gate_seen", None)
    if client is None:
        try:
            client = getattr(request.getClientAddress(), "host", None)
        except Exception:
            client = None
    request_headers = getattr(request, "requestHeaders", None)
    response_headers = None
    if status is not None:
        if getattr(request, "headers_at", None) is not None:  # a forwarded answer
            # Its headers are the backend's: those LOG_BODIES captured, if on.
            response_headers = getattr(getattr(request, "exchange", None),
                                       "response_headers", None) or None
        elif getattr(request, "responseHeaders", None) is not None:
            response_headers = list(request.responseHeaders.getAllRawHeaders())
    return (
        None, getattr(live, "name", None), status, None if seen is None else _user_of(seen),
        getattr(request, "request_id", None), getattr(request, "method", None), path, duration,
        client,
        None if request_headers is None else list(request_headers.getAllRawHeaders()),
        response_headers, None,
    )


def summary_of(record: tuple, secrets: Iterable = ()) -> dict:
    """The L{exchange_summary} of an L{exchange_record}, redacted with C{secrets} (the tokens)."""
    return _summary(record, _as_texts(secrets))


def _summary(record: tuple, secrets: tuple) -> dict:
    route, status, user = record[_ROUTE], record[_STATUS], record[_USER]
    request_headers = record[_REQUEST_HEADERS]
    response_headers = record[_RESPONSE_HEADERS]
    when = record[_WHEN]
    return {
        "id": record[_ID],
        "time": None if when is None else float(when),
        "request_id": _text_of(record[_REQUEST_ID]),
        "method": _text_of(record[_METHOD], "-"),
        "path": redact_text(_text_of(record[_PATH], ""), secrets),
        "route": None if route is None else str(route),
        "status": None if status is None else int(status),
        "duration_ms": round(float(record[_DURATION]) * 1000.0, 3),
        "user": None if user is None else str(user),
        "client": _text_of(record[_CLIENT], "-"),
        "request_headers": (
            [] if request_headers is None else redact_headers(request_headers, secrets)
        ),
        "response_headers": (
            None if response_headers is None else redact_headers(response_headers, secrets)
        ),
    }


def exchange_summary(request, status: Optional[int], duration: float, path,
                     secrets: Iterable = (), client: Optional[str] = None) -> dict:
    """
    What L{RequestRing} keeps of an exchange, from a GatewayRequest-like
    C{request}; C{status} None when it broke off before an answer,
    C{duration} in seconds, C{path} as logged (the site drops the query
    unless LOG_REDACT_QUERY=false), C{client} the visitor's address when
    the caller knows it (behind a trusted proxy), else the peer's.

    Headers are [name, value] pairs with credentials redacted
    (L{redact_headers}; C{secrets} the tokens). The response headers are
    the gateway's own answer's (C{request.responseHeaders}); a forwarded
    answer's are the backend's, not kept there: those LOG_BODIES captured
    when it is on, else None, and None without an answer. C{id} and
    C{time} are left to L{RequestRing.record}.

    Costs some 4 us: the site keeps its exchanges with
    L{RequestRing.record_exchange} instead, which summarizes when read.
    """
    return summary_of(exchange_record(request, status, duration, path, client), secrets)


class RequestRing(_Ring):
    """
    The last C{size} exchanges, each an L{exchange_summary} with its id and time.

    Cost: L{record_exchange} (the site's, on every exchange) keeps a
    tuple of the few fields and a copy of the raw header list, well under
    a microsecond; the summary, with its decoding and its redaction, is
    made each time the exchange is read (L{get}, L{list}), with the
    secrets of then. The exchanges handed out are new dicts at each read
    (those given to L{record} excepted: the ring's own).

    Exchanges are kept from one thread, the reactor's (the site's); they
    may be read from any.

    @param secrets: the strings (bytes or str: the tokens) to redact, or
        a callable giving them, asked at each read: the site's gives the
        route table's upstream tokens in force.
    """

    def __init__(self, size: int = REQUEST_RING_SIZE, clock: Callable[[], float] = time.time,
                 secrets=(), ids=None):
        super().__init__(size, clock, ids)
        self.set_secrets(secrets)

    _id_of = staticmethod(operator.itemgetter(_ID))

    def set_secrets(self, secrets) -> None:
        """Redact C{secrets} (an iterable, or a callable giving one) from the exchanges read from now on."""
        self._secrets = secrets if callable(secrets) else _as_texts(secrets)

    def _secret_texts(self) -> tuple:
        secrets = self._secrets
        return _as_texts(secrets()) if callable(secrets) else secrets

    def record(self, summary: dict) -> dict:
        """Keep (a copy of) C{summary}, given the next id and, unless it has one, the clock's time."""
        entry = dict(summary)
        if entry.get("time") is None:
            entry["time"] = float(self._clock())
        entry["id"] = next(self._ids)
        self._entries.append(
            (entry["id"], entry.get("route"), entry.get("status"), entry.get("user"), entry))
        return entry

    def record_exchange(self, request, status: Optional[int], duration: float, path,
                        client) -> None:
        """
        Keep the exchange of C{request}, a L{wighaven.proxy.channel.GatewayRequest}
        (the other arguments as L{exchange_summary}'s, C{client} given), at
        the clock's time. The forwarding path's: as cheap as can be.
        """
        live = getattr(request, "live_route", None)
        seen = request.gate_seen
        response_headers = None
        if status is not None:
            if request.headers_at is not None:  # a forwarded answer: see exchange_summary
                exchange = request.exchange
                if exchange is not None:
                    response_headers = exchange.response_headers or None
            else:
                response_headers = list(request.responseHeaders.getAllRawHeaders())
        self._entries.append((
            next(self._ids), None if live is None else live.name, status,
            None if seen is None else _user_of(seen),
            request.request_id, request.method, path, duration, client,
            list(request.requestHeaders.getAllRawHeaders()), response_headers, self._clock(),
        ))

    def _views(self, items: list) -> list:
        secrets = None
        views = []
        for item in items:
            if len(item) == 5:  # a summary given to record()
                views.append(item[4])
                continue
            if secrets is None:
                secrets = self._secret_texts()
            views.append(_summary(item, secrets))
        return views

    def get(self, entry_id) -> Optional[dict]:
        """The exchange of id C{entry_id}, None when unknown or evicted."""
        return self._get(entry_id)

    def list(self, route: Optional[str] = None, status_class: Optional[str] = None,
             user: Optional[str] = None, after=None, before=None, limit: int = 100):
        """
        (exchanges newest first, next cursor): those of C{route}, whose
        status is in C{status_class} ("2xx", "4xx", "5xx"...; exchanges
        without a status are in none), of C{user}; cursors and limit as in
        L{_Ring.page}.
        """
        tests = []
        if route is not None:
            tests.append(lambda item: _text_of(item[_ROUTE]) == route)
        if status_class is not None:
            status_class = status_class.lower()
            if status_class not in _STATUS_CLASSES:
                raise ValueError("unknown status class %r" % (status_class,))
            hundreds = int(status_class[0])
            tests.append(lambda item: item[_STATUS] is not None
                         and int(item[_STATUS]) // 100 == hundreds)
        if user is not None:
            tests.append(lambda item: _text_of(item[_USER]) == user)
        return self.page(_all(tests), after, before, limit)
