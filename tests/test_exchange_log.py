"""Tests for L{wighaven.observe.exchange_log}: what LOG_BODIES records of an
exchange, and that credentials never make it into the record: secret
headers become "[redacted]" whatever their case, the token is redacted
anywhere else (other headers, bodies), even cut short by the capture
limit; bodies are captured up to LOG_BODIES_MAX bytes, and not at all in
"headers" mode.
"""

from twisted.trial.unittest import SynchronousTestCase

from wighaven.observe.exchange_log import REDACTED, SECRET_HEADERS, ExchangeLog

TOKEN = b"hf_testtoken_S3cr3t_0123456789abcdef"


class SecretHeaderTests(SynchronousTestCase):

    def setUp(self):
        self.log = ExchangeLog("full", 4096, TOKEN)

    def test_the_secret_headers(self):
        self.assertEqual(
            SECRET_HEADERS,
            {b"authorization", b"proxy-authorization", b"cookie", b"set-cookie",
             b"x-hf-authorization", b"x-api-key"},
        )
        self.assertEqual(REDACTED, b"[redacted]")

    def test_secret_headers_redacted_in_any_case(self):
        raw = [
            (b"Authorization", [b"Bearer " + TOKEN]),
            (b"authorization", [b"Basic dXNlcjpwYXNz"]),
            (b"COOKIE", [b"session=abc; theme=dark"]),
            (b"Set-Cookie", [b"a=1; Path=/", b"b=2; HttpOnly"]),
            (b"X-HF-Authorization", [b"Bearer client-own"]),
            (b"x-Hf-AuthoriZation", [b"Bearer other"]),
            (b"Proxy-Authorization", [b"Basic cHJveHk6cHc="]),
            (b"pRoXy-AuThOrIzAtIoN", [b"Digest x"]),
        ]
        shown = self.log.headers(raw)
        self.assertEqual(
            shown,
            [
                ["Authorization", "[redacted]"],
                ["authorization", "[redacted]"],
                ["COOKIE", "[redacted]"],
                ["Set-Cookie", "[redacted]"],
                ["Set-Cookie", "[redacted]"],
                ["X-HF-Authorization", "[redacted]"],
                ["x-Hf-AuthoriZation", "[redacted]"],
                ["Proxy-Authorization", "[redacted]"],
                ["pRoXy-AuThOrIzAtIoN", "[redacted]"],
            ],
        )

    def test_secret_headers_redacted_without_a_token(self):
        log = ExchangeLog("headers", 0, None)
        shown = log.headers([(b"Cookie", [b"session=abc"]), (b"Authorization", [b"Bearer x"]),
                             (b"Accept", [b"text/plain"])])
        self.assertEqual(
            shown, [["Cookie", "[redacted]"], ["Authorization", "[redacted]"], ["Accept", "text/plain"]]
        )

    def test_other_headers_kept_as_they_are(self):
        raw = [
            (b"Content-Type", [b"application/json"]),
            (b"Accept", [b"text/event-stream", b"application/json"]),
            (b"X-Request-ID", [b"abc-123"]),
            (b"X-Latin", [b"caf\xe9"]),
        ]
        self.assertEqual(
            self.log.headers(raw),
            [
                ["Content-Type", "application/json"],
                ["Accept", "text/event-stream"],
                ["Accept", "application/json"],
                ["X-Request-ID", "abc-123"],
                ["X-Latin", "caf\xe9"],
            ],
        )

    def test_token_redacted_in_other_headers(self):
        raw = [
            (b"X-Debug", [b"token=" + TOKEN + b"; user=me"]),
            (b"Referer", [b"https://space.example/?t=" + TOKEN + b"&again=" + TOKEN + b"&x=1"]),
            (b"Location", [TOKEN]),
        ]
        shown = self.log.headers(raw)
        self.assertEqual(
            shown,
            [
                ["X-Debug", "token=[redacted]; user=me"],
                ["Referer", "https://space.example/?t=[redacted]&again=[redacted]&x=1"],
                ["Location", "[redacted]"],
            ],
        )
        self.assertNotIn(TOKEN.decode(), repr(shown))


class BodyTests(SynchronousTestCase):

    def test_full_captures_both_bodies(self):
        record = ExchangeLog("full", 4096, TOKEN).record()
        record.request_body(b'{"prompt": ')
        record.request_body(b'"hello"}')
        record.response_body(b"data: one\n\n")
        record.response_body(b"data: two\n\n")
        fields = record.fields()
        self.assertEqual(fields["request_body"], '{"prompt": "hello"}')
        self.assertEqual(fields["response_body"], "data: one\n\ndata: two\n\n")
        self.assertEqual(set(fields), {"request_headers", "response_headers", "request_body",
                                       "response_body"})

    def test_capture_capped_at_the_limit(self):
        record = ExchangeLog("full", 64, TOKEN).record()
        for i in range(10):
            record.request_body(b"%d" % i * 30)  # 300 bytes in ten pieces
        record.response_body(b"z" * 1000)
        fields = record.fields()
        self.assertEqual(fields["request_body"], ("0" * 30 + "1" * 30 + "2" * 4))
        self.assertEqual(fields["response_body"], "z" * 64)

    def test_capture_limit_exactly_reached(self):
        record = ExchangeLog("full", 10, TOKEN).record()
        record.response_body(b"0123456789")
        record.response_body(b"more")
        self.assertEqual(record.fields()["response_body"], "0123456789")

    def test_zero_limit_captures_nothing(self):
        record = ExchangeLog("full", 0, TOKEN).record()
        record.request_body(b"abc")
        record.response_body(b"def")
        fields = record.fields()
        self.assertEqual((fields["request_body"], fields["response_body"]), ("", ""))

    def test_token_redacted_in_bodies(self):
        record = ExchangeLog("full", 4096, TOKEN).record()
        record.request_body(b'{"token": "' + TOKEN + b'", "x": 1}')
        record.response_body(b'[["Authorization", "Bearer ' + TOKEN + b'"], ["A", "' + TOKEN + b'"]]')
        fields = record.fields()
        self.assertEqual(fields["request_body"], '{"token": "[redacted]", "x": 1}')
        self.assertEqual(fields["response_body"],
                         '[["Authorization", "Bearer [redacted]"], ["A", "[redacted]"]]')

    def test_token_split_across_chunks_redacted(self):
        record = ExchangeLog("full", 4096, TOKEN).record()
        record.response_body(b"key=" + TOKEN[:10])
        record.response_body(TOKEN[10:] + b";")
        self.assertEqual(record.fields()["response_body"], "key=[redacted];")

    def test_token_cut_short_at_the_limit_redacted(self):
        prefix = b'{"uri": "/echo", "auth": "Bearer '
        for kept in (1, 2, 3, 10, len(TOKEN) - 1):
            limit = len(prefix) + kept
            record = ExchangeLog("full", limit, TOKEN).record()
            record.response_body(prefix + TOKEN + b'"}')
            shown = record.fields()["response_body"]
            self.assertEqual(shown, prefix.decode() + "[redacted]", kept)
            if kept >= 3:  # shorter prefixes ("h", "hf") occur in ordinary text
                self.assertNotIn(TOKEN[:kept].decode(), shown)

    def test_token_whole_then_cut_short(self):
        body = b"token=" + TOKEN + b"&again=" + TOKEN + b"&end"
        record = ExchangeLog("full", 64, TOKEN).record()
        record.request_body(body)
        self.assertEqual(record.fields()["request_body"], "token=[redacted]&again=[redacted]")

    def test_token_ending_exactly_at_the_limit(self):
        record = ExchangeLog("full", len(b"t=") + len(TOKEN), TOKEN).record()
        record.response_body(b"t=" + TOKEN + b"tail")
        self.assertEqual(record.fields()["response_body"], "t=[redacted]")

    def test_no_token_configured(self):
        record = ExchangeLog("full", 100, None).record()
        record.response_body(b"plain " + TOKEN)
        self.assertEqual(record.fields()["response_body"], "plain " + TOKEN.decode())

    def test_binary_body_does_not_break_the_record(self):
        record = ExchangeLog("full", 100, TOKEN).record()
        record.response_body(b"\xff\xfe\x00abc")
        self.assertEqual(record.fields()["response_body"], "\ufffd\ufffd\x00abc")


class HeadersModeTests(SynchronousTestCase):

    def test_headers_mode_captures_no_body(self):
        log = ExchangeLog("headers", 4096, TOKEN)
        self.assertFalse(log.full)
        self.assertEqual(log.limit, 0)
        record = log.record()
        record.request_headers = log.headers([(b"Authorization", [b"Bearer " + TOKEN]),
                                              (b"Accept", [b"*/*"])])
        record.response_headers = log.headers([(b"Set-Cookie", [b"s=1"]),
                                               (b"Content-Type", [b"text/plain"])])
        record.request_body(b"request body " + TOKEN)
        record.response_body(b"response body")
        fields = record.fields()
        self.assertEqual(fields, {
            "request_headers": [["Authorization", "[redacted]"], ["Accept", "*/*"]],
            "response_headers": [["Set-Cookie", "[redacted]"], ["Content-Type", "text/plain"]],
        })

    def test_full_mode(self):
        log = ExchangeLog("full", 123, TOKEN)
        self.assertTrue(log.full)
        self.assertEqual(log.limit, 123)

    def test_each_record_is_its_own(self):
        log = ExchangeLog("full", 100, TOKEN)
        first, second = log.record(), log.record()
        first.response_body(b"one")
        second.response_body(b"two")
        self.assertEqual(first.fields()["response_body"], "one")
        self.assertEqual(second.fields()["response_body"], "two")


class UntruncatedTextTests(SynchronousTestCase):
    """Only a capture cut at the limit can end with a piece of the token."""

    def setUp(self):
        self.log = ExchangeLog("full", 4096, TOKEN)

    def test_header_ending_like_the_token_start_kept(self):
        shown = self.log.headers([(b"Referer", [b"https://x/graph"]), (b"X-A", [b"hf"])])
        self.assertEqual(shown, [["Referer", "https://x/graph"], ["X-A", "hf"]])

    def test_whole_short_body_kept(self):
        record = self.log.record()
        record.request_body(b"which")
        self.assertEqual(record.fields()["request_body"], "which")
