"""LOG_BODIES: what a forwarded exchange looked like, for debugging a Space.

Rule: with LOG_BODIES=headers, one log event per forwarded exchange gives
the request headers as sent upstream and the response headers as received;
with LOG_BODIES=full it adds the first LOG_BODIES_MAX bytes of each body
(copied as they stream by; the bodies themselves are never held).
Credentials are never logged: the values of Authorization, Cookie,
Set-Cookie, X-HF-Authorization and Proxy-Authorization become
"[redacted]", and so does the token wherever else it appears, even cut
short at the end of a captured body.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["ExchangeLog", "ExchangeRecord", "SECRET_HEADERS"]

SECRET_HEADERS = frozenset(
    [b"authorization", b"proxy-authorization", b"cookie", b"set-cookie", b"x-hf-authorization",
     b"x-api-key"]  # the gateway's API keys (wighaven.auth.keys)
)
REDACTED = b"[redacted]"


class ExchangeLog:
    """The LOG_BODIES policy: C{mode} "headers" or "full", C{limit} bytes per body."""

    def __init__(self, mode: str, limit: int, token: Optional[bytes]):
        self.full = mode == "full"
        self.limit = limit if self.full else 0
        # Every upstream's token (a route table has several; a reload replaces them).
        self.tokens = (token,) if token else ()

    def redact(self, data: bytes, truncated: bool = False) -> bytes:
        """
        C{data} with every token replaced; when C{truncated} (a capture cut
        at the limit), also a start of a token left at the very end.
        """
        for token in self.tokens:
            data = data.replace(token, REDACTED)
        if truncated:
            for token in self.tokens:
                for k in range(min(len(token) - 1, len(data)), 0, -1):
                    if data.endswith(token[:k]):
                        return data[:-k] + REDACTED
        return data

    def headers(self, raw_headers) -> list:
        """[name, value] pairs as text, secrets redacted."""
        out = []
        for name, values in raw_headers:
            secret = name.lower() in SECRET_HEADERS
            for value in values:
                shown = REDACTED if secret else self.redact(value)
                out.append([name.decode("latin-1"), shown.decode("latin-1")])
        return out

    def record(self) -> "ExchangeRecord":
        return ExchangeRecord(self)


class ExchangeRecord:
    """One exchange being captured."""

    def __init__(self, policy: ExchangeLog):
        self._policy = policy
        self.request_headers = []
        self.response_headers = []
        self._request_body = bytearray()
        self._response_body = bytearray()
        self._truncated = set()  # ids of the buffers that dropped bytes

    def request_body(self, data: bytes) -> None:
        self._capture(self._request_body, data)

    def response_body(self, data: bytes) -> None:
        self._capture(self._response_body, data)

    def _capture(self, buffer: bytearray, data: bytes) -> None:
        room = self._policy.limit - len(buffer)
        if room > 0:
            buffer += data[:room]
        if len(data) > room:
            self._truncated.add(id(buffer))

    def fields(self) -> dict:
        """What the log event carries."""
        fields = {
            "request_headers": self.request_headers,
            "response_headers": self.response_headers,
        }
        if self._policy.full:
            for name, buffer in (("request_body", self._request_body),
                                 ("response_body", self._response_body)):
                shown = self._policy.redact(bytes(buffer), id(buffer) in self._truncated)
                fields[name] = shown.decode("utf-8", "replace")
        return fields
