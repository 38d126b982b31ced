"""The route model (wighaven.config.routes): the config file's schema, each
mistake as one line naming the route and the key, secrets by reference."""

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from wighaven.config.routes import (
    SEALED_PREFIX, Route, RouteError, Upstream, env_route, load_route_file, parse_route,
    parse_routes, route_table,
)
from wighaven.config.settings import ConfigError, load_config

from .support.certs import pki

ENV = {"HF_TOKEN_CHAT": "hf_chat_secret_1234", "HF_TOKEN_API": "hf_api_secret_5678"}

EXAMPLE = '''
[[routes]]
name = "chat"
hosts = ["chat.example.org", "*.chat.example.org"]
path = "/chat/"
strip_path = false
balance = "least_in_flight"
affinity = "gradio"
retries = 1
health_path = "/healthz"

[[routes.upstreams]]
url = "https://user-chat-a.hf.space/"
token = "env:HF_TOKEN_CHAT"
weight = 3
space = "user/chat-a"

[[routes.upstreams]]
url = "https://user-chat-b.hf.space:8443"
token = "env:HF_TOKEN_CHAT"

[[routes]]
name = "api"
path = "/api"

[[routes.upstreams]]
url = "http://10.0.0.7:7860"
token = "env:HF_TOKEN_API"
'''


def route(**overrides):
    """One route table with one upstream, as parsed TOML."""
    upstream = {"url": "https://user-x.hf.space", "token": "env:HF_TOKEN_CHAT"}
    upstream.update(overrides.pop("upstream", {}))
    table = {"name": "x", "upstreams": [upstream]}
    table.update(overrides)
    return table


class ParseTests(SynchronousTestCase):
    def write(self, text, suffix=".toml"):
        fd, path = tempfile.mkstemp(suffix=suffix)
        self.addCleanup(os.remove, path)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def assertRefused(self, tables, line, env=ENV):
        with self.assertRaises(ConfigError) as caught:
            parse_routes({"routes": tables}, env)
        message = str(caught.exception)
        self.assertEqual(message, line)
        self.assertNotIn("\n", message)
        return message

    def test_the_full_schema(self):
        chat, api = load_route_file(self.write(EXAMPLE), ENV)
        self.assertEqual(chat.name, "chat")
        self.assertEqual(chat.hosts, ("chat.example.org", "*.chat.example.org"))
        self.assertEqual(chat.path, "/chat")  # a trailing slash is dropped
        self.assertEqual((chat.strip_path, chat.balance, chat.affinity, chat.retries),
                         (False, "least_in_flight", "gradio", 1))
        self.assertEqual(chat.health_path, "/healthz")
        a, b = chat.upstreams
        self.assertEqual((a.url, a.scheme, a.host, a.port, a.weight, a.space),
                         ("https://user-chat-a.hf.space", "https", "user-chat-a.hf.space", 443,
                          3, "user/chat-a"))
        self.assertEqual((a.token, a.token_ref), ("hf_chat_secret_1234", "env:HF_TOKEN_CHAT"))
        self.assertEqual((b.port, b.weight, b.space), (8443, 1, None))
        self.assertEqual(api.upstreams[0].token, "hf_api_secret_5678")
        self.assertEqual(api.upstreams[0].port, 7860)

    def test_defaults(self):
        [r] = parse_routes({"routes": [route()]}, ENV)
        self.assertEqual((r.hosts, r.path, r.strip_path, r.balance, r.affinity, r.retries,
                          r.health_path, r.source),
                         ((), "/", True, "round_robin", "none", 0, None, "file"))

    def test_tokens_never_in_a_repr(self):
        [r] = parse_routes({"routes": [route()]}, ENV)
        self.assertNotIn("hf_chat_secret_1234", repr(r))
        self.assertIn("env:HF_TOKEN_CHAT", repr(r))

    def test_a_token_from_a_file(self):
        path = self.write("  hf_from_a_file_99\n", suffix=".secret")
        [r] = parse_routes({"routes": [route(upstream={"token": "file:" + path})]}, ENV)
        self.assertEqual(r.upstreams[0].token, "hf_from_a_file_99")

    def test_no_token_forwards_no_credential(self):
        upstream = {"url": "https://public.example"}
        [r] = parse_routes({"routes": [{"name": "x", "upstreams": [upstream]}]}, ENV)
        self.assertIsNone(r.upstreams[0].token)

    def test_a_literal_token_is_refused_and_not_echoed(self):
        message = self.assertRefused(
            [route(upstream={"token": "hf_literal_leak_0000"})],
            """route 'x': upstreams[0].token: must be "env:NAME" or "file:/path", never the token"""
            """ itself""")
        self.assertNotIn("hf_literal_leak_0000", message)

    def test_a_token_that_is_no_header_word_is_refused_and_not_echoed(self):
        # It goes up in "Authorization: Bearer <token>" and in health probes, which
        # could not send it: refused when read, not when the table is applied.
        for value in ("hf_with space", "hf_t\u00f6ken", "hf_tab\tin"):
            message = self.assertRefused(
                [route(upstream={"token": "env:ODD"})],
                "route 'x': upstreams[0].token: must be one word of visible ASCII characters, as"
                " tokens are (no spaces, accents or control characters)",
                env=dict(ENV, ODD=value))
            self.assertNotIn(value, message)

    def test_missing_secrets(self):
        self.assertRefused([route(upstream={"token": "env:NOPE"})],
                           "route 'x': upstreams[0].token: environment variable NOPE is not set")
        self.assertRefused([route(upstream={"token": "file:/no/such/secret"})],
                           "route 'x': upstreams[0].token: file '/no/such/secret' cannot be read:"
                           " No such file or directory")
        self.assertRefused([route(upstream={"token": "file:relative"})],
                           "route 'x': upstreams[0].token: file: takes an absolute path, got "
                           "'relative'")
        empty = self.write("\n", suffix=".secret")
        self.assertRefused([route(upstream={"token": "file:" + empty})],
                           "route 'x': upstreams[0].token: file %r is empty" % empty)

    def test_unknown_keys(self):
        with self.assertRaises(ConfigError) as caught:
            parse_routes({"route": []}, ENV)
        self.assertEqual(str(caught.exception),
                         "config file: unknown key 'route' (known: routes)")
        self.assertRefused([route(hostz=["a.example"])],
                           "route 'x': hostz: unknown key (known: access, affinity, balance, enabled,"
                           " health_interval, health_path, hosts, name, path, retries, strip_path,"
                           " upstreams)")
        self.assertRefused([route(upstream={"wieght": 2})],
                           "route 'x': upstreams[0].wieght: unknown key (known: ca_bundle, space,"
                           " token, url, weight)")

    def test_enabled(self):
        """A route may be switched off (503 route_disabled); on unless it says so."""
        self.assertTrue(parse_routes({"routes": [route()]}, ENV)[0].enabled)
        self.assertFalse(parse_routes({"routes": [route(enabled=False)]}, ENV)[0].enabled)
        self.assertRefused([route(enabled="no")], "route 'x': enabled: must be true or false")

    def test_errors_name_their_field(self):
        """A refusal carries the field and the message apart, for the admin API's 422."""
        with self.assertRaises(RouteError) as caught:
            parse_route(route(upstream={"weight": 0}), ENV)
        self.assertEqual(caught.exception.field, "upstreams[0].weight")
        self.assertEqual(caught.exception.message, "must be a whole number from 1 to 1000")

    def test_sealed_tokens(self):
        """The store's routes keep tokens sealed: opened by the caller's box, refused without."""
        table = route(upstream={"token": SEALED_PREFIX + "sealed-text"})
        parsed = parse_route(table, ENV, open_sealed=lambda text: "opened:" + text,
                             source="store")
        self.assertEqual(parsed.upstreams[0].token, "opened:sealed-text")
        self.assertEqual(parsed.upstreams[0].token_ref, "sealed")
        self.assertEqual(parsed.source, "store")
        self.assertNotIn("sealed-text", repr(parsed))
        with self.assertRaises(RouteError) as caught:
            parse_route(table, ENV)
        self.assertEqual(caught.exception.field, "upstreams[0].token")

    def test_names(self):
        for bad in ("", "Chat", "chat_1", "x" * 64, 7):
            table = route(name=bad)
            self.assertRefused([table], "route %s: name: required: 1 to 63 of a-z, 0-9 and -"
                               % (repr(bad) if isinstance(bad, str) else "#1"))
        table = route()
        del table["name"]
        self.assertRefused([table], "route #1: name: required: 1 to 63 of a-z, 0-9 and -")
        self.assertRefused([route(name="a"), route(name="a", path="/other")],
                           "route 'a': name: used by another route; names are unique")

    def test_two_routes_with_the_same_match(self):
        self.assertRefused([route(name="a"), route(name="b")],
                           "route 'b': path: route 'a' already matches no hosts and path '/'")
        self.assertRefused(
            [route(name="a", hosts=["x.example", "y.example"], path="/p"),
             route(name="b", hosts=["Y.example"], path="/p/")],
            "route 'b': path: route 'a' already matches host 'y.example' and path '/p'")
        # Another host, another path, or a wildcard beside an exact name: all distinct.
        routes = parse_routes({"routes": [
            route(name="a", hosts=["x.example"]), route(name="b", hosts=["*.x.example"]),
            route(name="c"), route(name="d", path="/d"), route(name="e", hosts=["x.example"],
                                                              path="/d")]}, ENV)
        self.assertEqual([r.name for r in routes], ["a", "b", "c", "d", "e"])

    def test_bad_urls(self):
        prefix = "route 'x': upstreams[0].url: "
        for url, message in [
            ("ftp://x.example", "must be an http:// or https:// URL with a host, e.g. "
                                "https://user-space.hf.space"),
            ("https://x.example/app", "must be an origin only (scheme://host[:port]), with no "
                                      "path or query"),
            ("https://user:pw@x.example", 'must not contain user:password@; put the token in '
                                          'token = "env:NAME"'),
            ("https://x.example:0", "has port 0; leave the port out or give a real one"),
            ("https://bad host.example", "has an invalid hostname: 'bad host.example'"),
            ("", "required, e.g. https://user-space.hf.space"),
        ]:
            self.assertRefused([route(upstream={"url": url})], prefix + message)

    def test_hosts_and_paths(self):
        [r] = parse_routes({"routes": [route(hosts=["Chat.Example.ORG."], path="/a/b/")]}, ENV)
        self.assertEqual((r.hosts, r.path), (("chat.example.org",), "/a/b"))
        for hosts in (["a.example:443"], ["*"], ["a.*.example"], ["bad host"], "a.example"):
            with self.assertRaises(ConfigError) as caught:
                parse_routes({"routes": [route(hosts=hosts)]}, ENV)
            self.assertTrue(str(caught.exception).startswith("route 'x': hosts: "))
        self.assertRefused([route(hosts=["a.example", "A.example"])],
                           "route 'x': hosts: a host is listed twice")
        for path in ("chat", "/a/../b", "/a?x=1", "/a#f", "/a b", 3):
            with self.assertRaises(ConfigError) as caught:
                parse_routes({"routes": [route(path=path)]}, ENV)
            self.assertTrue(str(caught.exception).startswith("route 'x': path: "), path)

    def test_values_of_the_wrong_kind(self):
        self.assertRefused([route(strip_path="yes")], "route 'x': strip_path: must be true or false")
        self.assertRefused([route(balance="random")],
                           """route 'x': balance: must be one of "round_robin", """
                           """"least_in_flight\"""")
        self.assertRefused([route(affinity="ip")],
                           """route 'x': affinity: must be one of "none", "cookie", "gradio\"""")
        self.assertRefused([route(retries=True)],
                           "route 'x': retries: must be a whole number from 0 to 10")
        self.assertRefused([route(retries=11)],
                           "route 'x': retries: must be a whole number from 0 to 10")
        self.assertRefused([route(upstream={"weight": 0})],
                           "route 'x': upstreams[0].weight: must be a whole number from 1 to 1000")
        self.assertRefused([route(upstream={"space": "no-slash"})],
                           "route 'x': upstreams[0].space: must be a Hugging Face repo id like "
                           "user/space-name")
        self.assertRefused([route(health_path="healthz")],
                           "route 'x': health_path: must be a path starting with /, e.g. /healthz")
        self.assertRefused([route(upstreams=[])],
                           "route 'x': upstreams: at least one [[routes.upstreams]] is required")

    def test_ca_bundles(self):
        [r] = parse_routes({"routes": [route(upstream={"ca_bundle": pki().ca_pem})]}, ENV)
        self.assertEqual(r.upstreams[0].ca_bundle, pki().ca_pem)
        not_pem = self.write("not a certificate", suffix=".pem")
        self.assertRefused([route(upstream={"ca_bundle": not_pem})],
                           "route 'x': upstreams[0].ca_bundle: file %r holds no PEM certificate"
                           % not_pem)

    def test_files_that_cannot_be_used(self):
        with self.assertRaises(ConfigError) as caught:
            load_route_file("/no/such/routes.toml", ENV)
        self.assertEqual(str(caught.exception),
                         "config file '/no/such/routes.toml' cannot be read: No such file or "
                         "directory")
        path = self.write("[[routes]\nname = 'x'\n")
        with self.assertRaises(ConfigError) as caught:
            load_route_file(path, ENV)
        self.assertTrue(str(caught.exception).startswith("config file %r is not valid TOML: "
                                                         % path))
        self.assertNotIn("\n", str(caught.exception))


class RouteTableTests(SynchronousTestCase):
    def env_default(self):
        config = load_config({"PRIVATE_BACKEND_URL": "https://user-space.hf.space",
                              "HF_TOKEN": "hf_env_token_1"})
        return env_route(config)

    def file_route(self, name, path="/", hosts=()):
        upstream = Upstream(url="https://a.example", scheme="https", host="a.example", port=443)
        return Route(name=name, upstreams=(upstream,), path=path, hosts=hosts)

    def test_the_environment_alone_is_one_route_at_the_root(self):
        default = self.env_default()
        self.assertEqual((default.name, default.path, default.hosts, default.source),
                         ("default", "/", (), "env"))
        [upstream] = default.upstreams
        self.assertEqual((upstream.url, upstream.token, upstream.token_ref),
                         ("https://user-space.hf.space", "hf_env_token_1", "env:HF_TOKEN"))
        routes, line = route_table(default, ())
        self.assertEqual(routes, (default,))
        self.assertIn("PRIVATE_BACKEND_URL is the route 'default' at /", line)

    def test_the_environment_takes_what_the_file_leaves(self):
        default, chat = self.env_default(), self.file_route("chat", "/chat")
        routes, line = route_table(default, (chat,))
        self.assertEqual(routes, (default, chat))
        self.assertEqual(line, "PRIVATE_BACKEND_URL is the route 'default' at /, for every "
                               "request no route of the config file matches")

    def test_a_catch_all_of_the_file_replaces_the_environment(self):
        root = self.file_route("main")
        routes, line = route_table(self.env_default(), (root,))
        self.assertEqual(routes, (root,))
        self.assertIn("PRIVATE_BACKEND_URL is not used", line)
        # A route at / for some hosts only is no catch-all.
        hosted = self.file_route("site", hosts=("a.example",))
        routes, _ = route_table(self.env_default(), (hosted,))
        self.assertEqual([r.name for r in routes], ["default", "site"])

    def test_a_file_route_named_default_beside_the_environment(self):
        with self.assertRaises(ConfigError) as caught:
            route_table(self.env_default(), (self.file_route("default", "/d"),))
        self.assertTrue(str(caught.exception).startswith("route 'default': name: taken by "
                                                         "PRIVATE_BACKEND_URL's route"))

    def test_a_file_alone(self):
        routes, line = route_table(None, (self.file_route("chat", "/chat"),))
        self.assertEqual(line, "requests no route matches get 404")
        routes, line = route_table(None, (self.file_route("main"),))
        self.assertEqual(line, "route 'main' takes every request no other route matches")
