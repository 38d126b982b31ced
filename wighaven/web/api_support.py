"""Pieces of the admin JSON API (C{/_gateway/api/v1/}) that need no web
framework: merge patches, ETags and If-Match, cursor pagination, and the
shape of validation errors.

Rules:
  - PATCH bodies are JSON Merge Patches, RFC 7396 exactly: null deletes a
    member, objects merge member by member, anything else (arrays
    included) replaces the whole value. Inputs are never changed: the
    result is a new value sharing nothing with them.
  - Each item has a strong ETag: a hash of its canonical JSON (sorted keys,
    no spaces), so the same content gives the same tag in every process and
    after every restart, with nothing stored. If-Match is RFC 9110's: C{*}
    or a list of entity-tags compared strongly; a weak tag never matches,
    and a header that doesn't parse matches nothing (a 412, not a write
    made on a guess).
  - Lists are paged by cursor, not by offset: a cursor names the key of the
    last item served, so an item created or deleted meanwhile neither
    repeats nor skips one. Cursors are opaque to clients (URL-safe base64
    of JSON); a cursor the gateway could not have made is refused.
  - Errors are the gateway's JSON bodies (L{wighaven.proxy.errors.error_body}):
    C{{"error": code, "detail": fixed phrase}}, plus, for a body that fails
    validation, C{"errors": [{"field": "upstreams[1].url", "message": ...}]}
    naming every bad field at once.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
from bisect import bisect_right
from typing import Any, Callable, Iterable, List, Optional, Union

__all__ = [
    "DEFAULT_LIMIT", "MAX_LIMIT", "ValidationFailed", "decode_cursor", "encode_cursor",
    "etag_of", "field_path", "if_match_ok", "merge_patch", "page", "problem",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_MAX_CURSOR = 2048  # characters; a cursor holds one key, never anything this long


# --- JSON Merge Patch (RFC 7396) -------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    """
    C{target} with the JSON Merge Patch C{patch} applied (RFC 7396, section 2).
    Neither input is changed; the result shares no object with them.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(result: dict, patch: dict) -> None:
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        elif isinstance(value, dict):
            current = result.get(name)
            if not isinstance(current, dict):
                current = result[name] = {}  # RFC 7396: a non-object target becomes {}
            _merge_into(current, value)
        else:
            result[name] = copy.deepcopy(value)


# --- ETags and If-Match (RFC 9110, 8.8.3 and 13.1.1) ------------------------------------------

def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def etag_of(item: dict) -> str:
    """
    The strong ETag of C{item}, quoted: the first 16 bytes (32 hex digits) of
    the SHA-256 of its canonical JSON. Key order makes no difference.
    """
    return '"%s"' % hashlib.sha256(_canonical(item)).hexdigest()[:32]


def _etagc_ok(opaque: str) -> bool:
    # etagc = %x21 / %x23-7E / obs-text (%x80-FF)
    return all(c == "\x21" or "\x23" <= c <= "\x7e" or "\x80" <= c <= "\xff" for c in opaque)


def _entity_tags(value: str) -> list:
    """The (weak, opaque-tag) pairs of a C{#entity-tag} list; ValueError if it doesn't parse."""
    tags = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t,":  # OWS and empty list elements
            i += 1
        if i >= n:
            return tags
        weak = value.startswith("W/", i)
        if weak:
            i += 2
        if i >= n or value[i] != '"':
            raise ValueError("not an entity-tag")
        end = value.find('"', i + 1)
        if end == -1 or not _etagc_ok(value[i + 1:end]):
            raise ValueError("not an entity-tag")
        tags.append((weak, value[i:end + 1]))
        i = end + 1
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] != ",":
            raise ValueError("not an entity-tag")


def if_match_ok(header_value: Optional[Union[str, bytes]], current_etag: Optional[str]) -> bool:
    """
    May a request with this If-Match value change the item whose ETag is
    C{current_etag} (None: there is no such item)?

    No header: yes. C{*}: yes if the item exists. Otherwise yes only if one
    of the listed tags equals C{current_etag} by strong comparison; a weak
    tag (C{W/"..."}) never does, nor does any tag of a header that doesn't
    parse. Several If-Match headers are one list: join them with commas.
    """
    if header_value is None:
        return True
    if isinstance(header_value, bytes):
        header_value = header_value.decode("latin-1")  # obs-text is octets %x80-FF
    value = header_value.strip(" \t")
    if current_etag is None:
        return False
    if value == "*":
        return True
    try:
        tags = _entity_tags(value)
    except ValueError:
        return False
    if current_etag.startswith("W/"):
        return False  # strong comparison: both must be strong
    return any(not weak and opaque == current_etag for weak, opaque in tags)


# --- Validation errors ------------------------------------------------------------------------

class ValidationFailed(ValueError):
    """
    A request (a body, a query parameter) has bad fields; C{errors} lists
    each as C{{"field": path, "message": text}}, the path made by
    L{field_path}. The messages are phrases chosen by the validator, never an
    exception's text, and are what the client reads.
    """

    def __init__(self, errors: Iterable[dict]):
        self.errors = [{"field": str(e["field"]), "message": str(e["message"])} for e in errors]
        if not self.errors:
            raise ValueError("ValidationFailed needs at least one error")
        first = self.errors[0]
        super().__init__("%s: %s" % (first["field"] or "(body)", first["message"])
                         + (" (and %d more)" % (len(self.errors) - 1) if len(self.errors) > 1
                            else ""))

    @classmethod
    def one(cls, field: str, message: str) -> "ValidationFailed":
        """The failure of a single field."""
        return cls([{"field": field, "message": message}])

    def within(self, *parts) -> "ValidationFailed":
        """
        These errors with their fields taken as relative to C{parts}: a
        validator of one upstream names C{url}, its caller puts it under
        C{("upstreams", 1)} and the client reads C{upstreams[1].url}.
        """
        prefix = field_path(*parts)
        return ValidationFailed([{"field": _join(prefix, e["field"]), "message": e["message"]}
                                 for e in self.errors])


# A key written bare in a path: a letter or underscore (any script), then letters, digits,
# underscores or hyphens. Any other key is written ["..."] (JSON string), so a path always
# reads back unambiguously: {"a.b": 1} is ["a.b"], not a.b.
_BARE_KEY = re.compile(r"[^\W\d][\w-]*\Z")


def _join(prefix: str, path: str) -> str:
    if not prefix or not path:
        return prefix or path
    return prefix + path if path.startswith("[") else prefix + "." + path


def field_path(*parts: Union[str, int]) -> str:
    """
    The path of a field within a JSON body: keys joined by dots, list indexes
    in brackets, e.g. C{field_path("upstreams", 1, "url") == "upstreams[1].url"}.
    A key that isn't a plain name (a dot, a space, a leading digit, empty...)
    is written C{["..."]}. No parts: C{""}, the body itself.
    """
    out = ""
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, (str, int)):
            raise TypeError("a path part is a str key or an int index, not %r" % (type(part),))
        if isinstance(part, int):
            out += "[%d]" % part
        elif _BARE_KEY.match(part):
            out = _join(out, part)
        else:
            out += "[%s]" % json.dumps(part, ensure_ascii=False)
    return out


def problem(status: int, code: str, detail: str, errors: Optional[Iterable[dict]] = None) -> dict:
    """
    The JSON body of an API error answer: C{{"error": code, "detail": detail}}
    as L{wighaven.proxy.errors.error_body} writes it, with C{"errors"} (each
    C{{"field", "message"}}) when given. C{status} is the caller's to set on
    the response; it is taken here so that a call reads as the answer it
    makes, and refused unless it is an error status (4xx or 5xx).
    """
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError("an error answer has a 4xx or 5xx status, not %r" % (status,))
    body = {"error": code, "detail": detail}
    if errors is not None:
        body["errors"] = [{"field": e["field"], "message": e["message"]} for e in errors]
    return body


# --- Cursor pagination ------------------------------------------------------------------------

def encode_cursor(position: Any) -> str:
    """
    An opaque cursor for C{position} (the key of the last item served; any
    JSON value, a tuple for a compound key): URL-safe base64 without padding.
    """
    raw = _canonical({"after": position})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: Union[str, bytes]) -> Any:
    """
    The position a cursor of L{encode_cursor} holds (a list where a tuple was
    encoded). Anything else, a changed character included, raises
    L{ValidationFailed} (a ValueError) for field C{cursor}.
    """
    bad = ValidationFailed.one("cursor", "not a cursor this API gave out")
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise bad from None
    if not isinstance(text, str) or not text or len(text) > _MAX_CURSOR or not text.isascii():
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(data, dict) or set(data) != {"after"}:
        raise bad
    try:
        if encode_cursor(data["after"]) != text:  # only the one spelling encode_cursor makes
            raise bad
    except (TypeError, ValueError):
        raise bad from None
    return data["after"]


def _comparable(value):
    """Lists and tuples alike as tuples (JSON has no tuple), recursively."""
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    return value


def _limit(limit) -> int:
    bad = ValidationFailed.one("limit", "must be a whole number from 1 to %d" % (MAX_LIMIT,))
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bytes):
        limit = limit.decode("ascii", "replace")
    if isinstance(limit, str):
        if not limit.isascii() or not limit.isdigit():
            raise bad
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise bad
    return limit


def page(items: List[Any], limit=None, cursor: Optional[Union[str, bytes]] = None,
         key: Callable[[Any], Any] = lambda item: item["id"]) -> dict:
    """
    One page of C{items}, a list sorted by C{key} with no two items of the
    same key (add the id to a compound key if need be): the items whose key
    comes after the cursor's, at most C{limit} of them (default 50, at most
    500; an int, or the digits of a query parameter). Returns
    C{{"items": [...], "next_cursor": cursor or None}}, None on the last page.
    A bad limit or cursor raises L{ValidationFailed} (a ValueError) naming
    C{limit} or C{cursor}.
    """
    limit = _limit(limit)
    start = 0
    if cursor is not None:
        after = _comparable(decode_cursor(cursor))
        try:
            start = bisect_right(items, after, key=lambda item: _comparable(key(item)))
        except TypeError:  # a cursor of another list (a str where the keys are ints...)
            raise ValidationFailed.one("cursor", "not a cursor of this list") from None
    chosen = items[start:start + limit]
    more = start + limit < len(items)
    return {"items": chosen, "next_cursor": encode_cursor(key(chosen[-1])) if more else None}
