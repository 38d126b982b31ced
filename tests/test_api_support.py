"""Framework-free pieces of the admin JSON API (wighaven.web.api_support): merge patches,
ETags and If-Match, cursor pagination, validation errors."""

import base64
import copy
import json

from twisted.trial.unittest import SynchronousTestCase

from wighaven.proxy.errors import GatewayError, error_body
from wighaven.web.api_support import (
    DEFAULT_LIMIT, MAX_LIMIT, ValidationFailed, decode_cursor, encode_cursor, etag_of,
    field_path, if_match_ok, merge_patch, page, problem,
)

# RFC 7396, Appendix A: (original, patch, result), written as JSON text.
RFC_7396_EXAMPLES = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', '{}'),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a": {"b": "c"}}', '{"a": {"b": "d", "c": null}}', '{"a": {"b": "d"}}'),
    ('{"a": [{"b":"c"}]}', '{"a": [1]}', '{"a": [1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', 'null', 'null'),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ('[1,2]', '{"a":"b","c":null}', '{"a":"b"}'),
    ('{}', '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]


class MergePatchTests(SynchronousTestCase):
    def test_every_example_of_rfc_7396_appendix_a(self):
        for original, patch, result in RFC_7396_EXAMPLES:
            self.assertEqual(merge_patch(json.loads(original), json.loads(patch)),
                             json.loads(result), (original, patch))

    def test_the_example_of_rfc_7396_section_3(self):
        target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
                  "tags": ["example", "sample"], "content": "This will be unchanged"}
        patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890",
                 "author": {"familyName": None}, "tags": ["example"]}
        self.assertEqual(merge_patch(target, patch), {
            "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
            "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})

    def test_nulls_inside_arrays_are_values(self):
        self.assertEqual(merge_patch({"a": [1]}, {"a": [None, {"b": None}]}),
                         {"a": [None, {"b": None}]})

    def test_non_ascii(self):
        self.assertEqual(
            merge_patch({"nom": "Zoë", "ville": "Zürich"}, {"ville": None, "名": "東"}),
            {"nom": "Zoë", "名": "東"})

    def test_inputs_are_never_changed_nor_shared(self):
        target = {"a": {"b": [1, 2], "c": "d"}, "e": {"f": 1}, "g": [{"h": 1}]}
        patch = {"a": {"c": None, "x": {"y": [3]}}, "e": None, "z": {"w": None}, "k": [{"l": 1}]}
        target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
        result = merge_patch(target, patch)
        self.assertEqual(result, {"a": {"b": [1, 2], "x": {"y": [3]}}, "g": [{"h": 1}], "z": {},
                                  "k": [{"l": 1}]})
        self.assertEqual((target, patch), (target_before, patch_before))
        result["a"]["b"].append(9)
        result["a"]["x"]["y"].append(9)
        result["g"][0]["h"] = 9
        result["k"][0]["l"] = 9
        self.assertEqual((target, patch), (target_before, patch_before))
        whole = [{"m": 1}]
        replaced = merge_patch(target, whole)
        replaced[0]["m"] = 2
        self.assertEqual(whole, [{"m": 1}])
        self.assertEqual(merge_patch(target, {}), target)
        self.assertIsNot(merge_patch(target, {}), target)


class ETagTests(SynchronousTestCase):
    def test_shape(self):
        tag = etag_of({"id": 1, "name": "api"})
        self.assertRegex(tag, r'\A"[0-9a-f]{32}"\Z')

    def test_key_order_makes_no_difference(self):
        first = {"id": 1, "name": "api", "upstreams": [{"url": "http://a", "weight": 2}]}
        second = {"upstreams": [{"weight": 2, "url": "http://a"}], "name": "api", "id": 1}
        self.assertEqual(etag_of(first), etag_of(second))

    def test_stable_across_processes(self):
        # The canonical JSON of this item is {"id":1,"name":"é"} (ASCII escapes, no spaces):
        # a fixed value, so a tag given out before a restart still matches after it.
        import hashlib
        expected = hashlib.sha256(b'{"id":1,"name":"\\u00e9"}').hexdigest()[:32]
        self.assertEqual(etag_of({"name": "é", "id": 1}), '"%s"' % expected)

    def test_content_changes_the_tag(self):
        base = {"id": 1, "name": "api", "tags": ["a", "b"]}
        others = [{"id": 1, "name": "apí", "tags": ["a", "b"]}, {"id": 1, "name": "api",
                  "tags": ["b", "a"]}, {"id": "1", "name": "api", "tags": ["a", "b"]},
                  {"id": 1, "name": "api", "tags": ["a", "b"], "x": None}]
        tags = {etag_of(base)} | {etag_of(o) for o in others}
        self.assertEqual(len(tags), 1 + len(others))


class IfMatchTests(SynchronousTestCase):
    tag = etag_of({"id": 1})

    def test_no_header_passes(self):
        self.assertTrue(if_match_ok(None, self.tag))
        self.assertTrue(if_match_ok(None, None))

    def test_star(self):
        self.assertTrue(if_match_ok("*", self.tag))
        self.assertTrue(if_match_ok(b" * ", self.tag))
        self.assertFalse(if_match_ok("*", None))  # no current representation

    def test_strong_comparison(self):
        tag = self.tag
        other = etag_of({"id": 2})
        self.assertTrue(if_match_ok(tag, tag))
        self.assertTrue(if_match_ok(tag.encode(), tag))
        self.assertTrue(if_match_ok('%s, %s' % (other, tag), tag))
        self.assertTrue(if_match_ok(' ,%s ,, %s\t' % (other, tag), tag))
        self.assertFalse(if_match_ok(other, tag))
        self.assertFalse(if_match_ok(tag, None))
        self.assertFalse(if_match_ok(tag.strip('"'), tag))  # unquoted: not an entity-tag

    def test_weak_tags_never_match(self):
        tag = self.tag
        self.assertFalse(if_match_ok("W/" + tag, tag))
        self.assertFalse(if_match_ok("W/" + tag, "W/" + tag))
        self.assertFalse(if_match_ok(tag, "W/" + tag))
        self.assertTrue(if_match_ok("W/%s, %s" % (tag, tag), tag))

    def test_commas_inside_a_tag(self):
        self.assertTrue(if_match_ok('"a,b", "c"', '"a,b"'))
        self.assertFalse(if_match_ok('"a,b", "c"', '"a"'))
        self.assertTrue(if_match_ok('"a,b", "c"', '"c"'))

    def test_a_header_that_does_not_parse_matches_nothing(self):
        tag = self.tag
        for value in ["", tag + tag, tag + " x", "%s, *" % tag, "w/" + tag, '"abc',
                      '"a b"', '"a\x7fb"', "W/", tag[:-1], "**"]:
            self.assertFalse(if_match_ok(value, tag), value)

    def test_obs_text(self):
        self.assertTrue(if_match_ok('"caf\xe9"'.encode("latin-1"), '"caf\xe9"'))


class FieldPathTests(SynchronousTestCase):
    def test_keys_and_indexes(self):
        self.assertEqual(field_path("upstreams", 1, "url"), "upstreams[1].url")
        self.assertEqual(field_path("routes", 0, "upstreams", 12, "tls", "ca_bundle"),
                         "routes[0].upstreams[12].tls.ca_bundle")
        self.assertEqual(field_path("matrix", 0, 1), "matrix[0][1]")
        self.assertEqual(field_path(3, "name"), "[3].name")
        self.assertEqual(field_path("name"), "name")
        self.assertEqual(field_path(), "")
        self.assertEqual(field_path("X-Request-ID", "_private"), "X-Request-ID._private")

    def test_non_ascii_keys(self):
        self.assertEqual(field_path("étiquettes", 0, "名前"), "étiquettes[0].名前")

    def test_keys_that_are_not_plain_names_are_quoted(self):
        self.assertEqual(field_path("headers", "a.b"), 'headers["a.b"]')
        self.assertEqual(field_path("headers", "a b", "c"), 'headers["a b"].c')
        self.assertEqual(field_path("x", ""), 'x[""]')
        self.assertEqual(field_path("x", "2fa"), 'x["2fa"]')
        self.assertEqual(field_path("x", 'q"[0]'), 'x["q\\"[0]"]')
        self.assertEqual(field_path("a.b"), '["a.b"]')
        self.assertEqual(field_path("x", "é.è"), 'x["é.è"]')

    def test_other_parts_are_refused(self):
        for part in [True, 1.5, None, b"x"]:
            with self.assertRaises(TypeError):
                field_path("x", part)


class ValidationFailedTests(SynchronousTestCase):
    def test_errors(self):
        errors = [{"field": field_path("upstreams", 1, "url"), "message": "must be an http(s) URL"},
                  {"field": "name", "message": "doit être renseigné"}]
        failure = ValidationFailed(errors)
        self.assertEqual(failure.errors, errors)
        self.assertIsInstance(failure, ValueError)
        self.assertEqual(str(failure), "upstreams[1].url: must be an http(s) URL (and 1 more)")
        errors.append({"field": "x", "message": "y"})
        self.assertEqual(len(failure.errors), 2)  # its own copy

    def test_one(self):
        failure = ValidationFailed.one("limit", "too big")
        self.assertEqual(failure.errors, [{"field": "limit", "message": "too big"}])
        self.assertEqual(str(failure), "limit: too big")

    def test_within(self):
        inner = ValidationFailed([{"field": "url", "message": "bad"},
                                  {"field": "[0]", "message": "first"},
                                  {"field": "", "message": "whole"},
                                  {"field": 'headers["a.b"]', "message": "q"}])
        self.assertEqual([e["field"] for e in inner.within("upstreams", 1).errors],
                         ["upstreams[1].url", "upstreams[1][0]", "upstreams[1]",
                          'upstreams[1].headers["a.b"]'])
        self.assertEqual(inner.within().errors, inner.errors)

    def test_needs_an_error(self):
        with self.assertRaises(ValueError):
            ValidationFailed([])


class ProblemTests(SynchronousTestCase):
    def test_without_errors(self):
        self.assertEqual(problem(404, "not_found", "no such route"),
                         {"error": "not_found", "detail": "no such route"})

    def test_with_errors(self):
        errors = [{"field": "upstreams[1].url", "message": "must be an http(s) URL"},
                  {"field": "名前", "message": "ne doit pas être vide"}]
        body = problem(422, "invalid_body", "the body has invalid fields", errors)
        self.assertEqual(body, {"error": "invalid_body", "detail": "the body has invalid fields",
                                "errors": errors})
        self.assertEqual(problem(422, "x", "y", [])["errors"], [])

    def test_the_same_body_as_error_body(self):
        failure = ValidationFailed([{"field": "名前", "message": "é"}])
        body = problem(422, "invalid_body", "the body has invalid fields", failure.errors)
        written = error_body(GatewayError(422, "invalid_body", "the body has invalid fields"),
                             errors=failure.errors)
        self.assertEqual(json.loads(written), body)
        self.assertEqual(list(json.loads(written)), list(body))

    def test_only_error_statuses(self):
        for status in [200, 302, 399, 600, True, "404"]:
            with self.assertRaises(ValueError):
                problem(status, "x", "y")


class CursorTests(SynchronousTestCase):
    def test_round_trip(self):
        for position in [1, "api", "Zürich-東京", ["api", 7], {"a": 1}, None, 2.5, 10 ** 30]:
            text = encode_cursor(position)
            self.assertRegex(text, r"\A[A-Za-z0-9_-]+\Z")
            self.assertEqual(decode_cursor(text), position)
            self.assertEqual(decode_cursor(text.encode()), position)
        self.assertEqual(decode_cursor(encode_cursor(("api", 7))), ["api", 7])

    def test_garbage_is_refused(self):
        good = encode_cursor("api")
        spaced = base64.urlsafe_b64encode(b'{"after": "api"}').rstrip(b"=").decode()
        for text in ["", "!!!!", "é", b"\xff", None, 42, "A" * 5000, good[:-1], good + "A",
                     good + "=", good + "==", "a",
                     base64.urlsafe_b64encode(b"not json").decode(),
                     base64.urlsafe_b64encode(b'"api"').rstrip(b"=").decode(),
                     base64.urlsafe_b64encode(b'{"after":1,"x":2}').rstrip(b"=").decode(),
                     base64.urlsafe_b64encode(b"\xff\xfe").decode(), spaced]:
            with self.assertRaises(ValueError) as caught:
                decode_cursor(text)
            self.assertIsInstance(caught.exception, ValidationFailed)
            self.assertEqual(caught.exception.errors[0]["field"], "cursor")


class PageTests(SynchronousTestCase):
    items = [{"id": i, "name": "n%03d" % i} for i in range(1, 121)]

    def test_walks_the_whole_list(self):
        seen, cursor, pages = [], None, 0
        while True:
            result = page(self.items, 50, cursor, key=lambda item: item["id"])
            seen.extend(result["items"])
            pages += 1
            cursor = result["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(seen, self.items)
        self.assertEqual(pages, 3)

    def test_default_limit(self):
        result = page(self.items)
        self.assertEqual(len(result["items"]), DEFAULT_LIMIT)
        self.assertEqual(decode_cursor(result["next_cursor"]), 50)

    def test_the_last_page_has_no_cursor(self):
        self.assertEqual(page(self.items[:3], 3), {"items": self.items[:3], "next_cursor": None})
        self.assertEqual(page([], 10), {"items": [], "next_cursor": None})
        last = page(self.items, 10, encode_cursor(120))
        self.assertEqual(last, {"items": [], "next_cursor": None})

    def test_items_created_or_deleted_meanwhile(self):
        first = page(self.items, 10)
        changed = [i for i in self.items if i["id"] not in (10, 11)] + [{"id": 500}]
        second = page(changed, 10, first["next_cursor"])
        self.assertEqual([i["id"] for i in second["items"]], list(range(12, 22)))
        inserted = sorted(self.items + [{"id": 10.5}], key=lambda i: i["id"])
        self.assertEqual(page(inserted, 1, first["next_cursor"])["items"], [{"id": 10.5}])

    def test_compound_and_non_ascii_keys(self):
        items = sorted(({"org": org, "name": name} for org in ["acme", "zoë"]
                        for name in ["α", "b", "東京"]), key=lambda i: (i["org"], i["name"]))

        def key(item):
            return (item["org"], item["name"])
        first = page(items, 4, None, key)
        self.assertEqual(decode_cursor(first["next_cursor"]), list(key(items[3])))
        second = page(items, 4, first["next_cursor"], key)
        self.assertEqual(first["items"] + second["items"], items)
        self.assertIsNone(second["next_cursor"])

    def test_limits(self):
        self.assertEqual(len(page(self.items, 1)["items"]), 1)
        self.assertEqual(len(page(self.items, "7")["items"]), 7)
        self.assertEqual(len(page(self.items, b"20")["items"]), 20)
        many = [{"id": i} for i in range(1000)]
        self.assertEqual(len(page(many, MAX_LIMIT)["items"]), 500)
        for bad in [0, -1, 501, "0", "501", "", " 5", "5.0", "+5", "٥", "abc", 2.0, True,
                    b"\xff"]:
            with self.assertRaises(ValueError) as caught:
                page(self.items, bad)
            self.assertEqual(caught.exception.errors, [
                {"field": "limit", "message": "must be a whole number from 1 to 500"}])

    def test_bad_cursors(self):
        for cursor in ["garbage", encode_cursor("a-string"), encode_cursor([1, 2])]:
            with self.assertRaises(ValueError) as caught:
                page(self.items, 10, cursor)
            self.assertEqual(caught.exception.errors[0]["field"], "cursor")
