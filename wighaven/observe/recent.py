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

Ids are consecutive integers from 1, one per entry in order of arrival,
so a cursor is just an id: C{before=id} pages to older entries,
C{after=id} fetches the newer ones when following (see L{_Ring.page} for
the next cursor of each). A follower that sees an id skipped can fetch it
with C{after}. Cost of a listing: finding the cursor is arithmetic on the
ids; the scan then walks entries newest first (oldest first after
C{after}) and stops at C{limit} matches, so without a filter it visits
C{limit} entries, and with a filter at most the whole ring (C{size}
entries, 2,000 at most by default) whatever the traffic.

The entries handed out (listings, L{RequestRing.get}, subscribers) are
the ring's own dicts: read them, don't change them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Callable, Iterable, Optional

from twisted.logger import FilteringLogObserver, LogLevel, formatEvent

from .exchange_log import REDACTED as _REDACTED_BYTES
from .exchange_log import SECRET_HEADERS
from .logs import level_predicate

__all__ = [
    "CUT_MARKER", "LogRing", "MAX_TEXT", "REDACTED", "RequestRing", "SECRET_HEADERS",
    "exchange_summary", "redact_headers", "redact_text",
]

REDACTED = _REDACTED_BYTES.decode("ascii")
MAX_TEXT = 4096  # characters of a log line's text; more is cut
CUT_MARKER = " [cut: %d more characters]"
LOG_RING_SIZE = 2000
REQUEST_RING_SIZE = 1000
_LEVEL_RANK = {level.name: rank for rank, level in enumerate(LogLevel.iterconstants())}
_STATUS_CLASSES = frozenset("%dxx" % n for n in range(1, 6))


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
    """Entries with consecutive ids in a bounded deque, and their listing."""

    def __init__(self, size: int, clock: Callable[[], float]):
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._clock = clock
        self._entries = deque(maxlen=size)
        self._ids = itertools.count(1)
        # Log events may come from other threads: iterating a deque while
        # another thread appends to it raises RuntimeError.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last_id(self) -> int:
        """The newest entry's id (0 when empty): where a follower starts (C{after})."""
        with self._lock:
            return self._entries[-1]["id"] if self._entries else 0

    def _append(self, entry: dict) -> dict:
        with self._lock:
            entry["id"] = next(self._ids)
            self._entries.append(entry)
        return entry

    def _get(self, entry_id) -> Optional[dict]:
        try:
            entry_id = int(entry_id)
        except (TypeError, ValueError):
            return None
        with self._lock:
            if not self._entries:
                return None
            index = entry_id - self._entries[0]["id"]
            if 0 <= index < len(self._entries):
                return self._entries[index]
        return None

    def page(self, match, after=None, before=None, limit=100):
        """
        (entries newest first, next cursor) of the entries C{match} accepts
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
        found = []
        with self._lock:
            entries = self._entries
            if not entries:
                return [], (after if after is not None else None)
            first = entries[0]["id"]
            last = entries[-1]["id"]
            high = last if before is None else min(last, before - 1)
            if after is not None:
                low = max(first, after + 1)
                cursor = after
                if low <= high:
                    # Oldest first from low: skip the entries below it.
                    for entry in itertools.islice(entries, low - first, high - first + 1):
                        cursor = entry["id"]
                        if match is None or match(entry):
                            found.append(entry)
                            if len(found) == limit:
                                break
                found.reverse()
                return found, cursor
            if high < first:
                return [], None
            # Newest first from high: skip the entries above it.
            scanned = itertools.islice(reversed(entries), last - high, None)
            for entry in scanned:
                if match is None or match(entry):
                    found.append(entry)
                    if len(found) == limit:
                        break
            more = bool(found) and len(found) == limit and found[-1]["id"] > first
            return found, (found[-1]["id"] if more else None)


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

    @param secrets: strings (bytes or str: the tokens) to redact from
        every line; L{set_secrets} replaces them (a route reload).
    """

    def __init__(self, size: int = LOG_RING_SIZE, secrets: Iterable = (),
                 clock: Callable[[], float] = time.time):
        super().__init__(size, clock)
        self._secrets = _as_texts(secrets)
        self._subscribers = {}
        self._subscription_ids = itertools.count()
        self._delivering = threading.local()

    def set_secrets(self, secrets: Iterable) -> None:
        """Redact C{secrets} from now on (lines already kept were redacted with the old ones)."""
        self._secrets = _as_texts(secrets)

    def filtered(self, level: str) -> FilteringLogObserver:
        """This ring behind the LOG_LEVEL filter of C{level}: the observer to register."""
        return FilteringLogObserver(self, [level_predicate(level)])

    def _text(self, event) -> str:
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
        text = redact_text(text, self._secrets)
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT] + CUT_MARKER % (len(text) - MAX_TEXT)
        return text

    def __call__(self, event) -> None:
        level = getattr(event.get("log_level"), "name", None)
        line = {
            "id": None,
            "time": float(event.get("log_time") or self._clock()),
            "level": level if level in _LEVEL_RANK else "info",
            "namespace": str(event.get("log_namespace") or "-"),
            "text": self._text(event),
        }
        self._append(line)
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
    """
    secrets = _as_texts(secrets)
    route = getattr(getattr(request, "live_route", None), "name", None)
    seen = getattr(request, "gate_seen", None)
    identity = getattr(seen, "identity", None)
    user = getattr(identity, "user", None)
    if client is None:
        try:
            client = getattr(request.getClientAddress(), "host", None)
        except Exception:
            client = None
    request_id = getattr(request, "request_id", None)
    request_headers = getattr(request, "requestHeaders", None)
    response_headers = None
    if status is not None:
        forwarded_answer = getattr(request, "headers_at", None) is not None
        if forwarded_answer:
            exchange = getattr(request, "exchange", None)
            captured = getattr(exchange, "response_headers", None)
            if captured:
                response_headers = redact_headers(captured, secrets)
        elif getattr(request, "responseHeaders", None) is not None:
            response_headers = redact_headers(request.responseHeaders.getAllRawHeaders(), secrets)
    return {
        "id": None,
        "time": None,
        "request_id": _text_of(request_id),
        "method": _text_of(getattr(request, "method", None), "-"),
        "path": redact_text(_text_of(path, ""), secrets),
        "route": None if route is None else str(route),
        "status": None if status is None else int(status),
        "duration_ms": round(float(duration) * 1000.0, 3),
        "user": None if user is None else str(user),
        "client": _text_of(client, "-"),
        "request_headers": (
            [] if request_headers is None
            else redact_headers(request_headers.getAllRawHeaders(), secrets)
        ),
        "response_headers": response_headers,
    }


class RequestRing(_Ring):
    """The last C{size} exchanges, each an L{exchange_summary} with its id and time."""

    def __init__(self, size: int = REQUEST_RING_SIZE, clock: Callable[[], float] = time.time):
        super().__init__(size, clock)

    def record(self, summary: dict) -> dict:
        """Keep (a copy of) C{summary}, given the next id and, unless it has one, the clock's time."""
        entry = dict(summary)
        if entry.get("time") is None:
            entry["time"] = float(self._clock())
        return self._append(entry)

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
            tests.append(lambda entry: entry["route"] == route)
        if status_class is not None:
            status_class = status_class.lower()
            if status_class not in _STATUS_CLASSES:
                raise ValueError("unknown status class %r" % (status_class,))
            hundreds = int(status_class[0])
            tests.append(lambda entry: entry["status"] is not None
                         and entry["status"] // 100 == hundreds)
        if user is not None:
            tests.append(lambda entry: entry["user"] == user)
        return self.page(_all(tests), after, before, limit)
