"""Tests for L{wighaven.config.settings}: loading settings from the environment and
command-line overrides, the defaults, every validation rule with its
one-line error message, and the backend's netloc and origin.
"""

import os

import attrs
from twisted.trial.unittest import SynchronousTestCase

from wighaven.config.settings import SETTINGS, Config, ConfigError, load_config, tunnel_limits

from .support.certs import pki

BACKEND = "https://user-space.hf.space"
# The rows that become fields of Config.auth (wighaven.config.auth_settings).
AUTH_ROWS = (
    "AUTH", "ACCESS", "DATABASE_URL", "SECRET_KEY", "SECRET_KEY_PREVIOUS", "JWT_TTL",
    "REFRESH_TTL", "SESSION_TTL", "METRICS_TOKEN", "AUDIT_RETENTION_DAYS", "ADMIN_USERNAME",
    "ADMIN_PASSWORD",
    "ADMIN_PASSWORD_HASH", "HF_OAUTH_CLIENT_ID", "HF_OAUTH_CLIENT_SECRET",
    "HF_OAUTH_PROVIDER_URL", "HF_OAUTH_SCOPES", "HF_OAUTH_ALLOWED_USERS",
    "HF_OAUTH_ALLOWED_ORGS", "HF_OAUTH_ADMIN_USERS", "PUBLIC_URL",
    "ALLOW_HTTP_UPSTREAMS", "ALLOW_PRIVATE_UPSTREAMS", "UPSTREAM_ALLOWLIST",
)


def env(**settings):
    """A minimal valid environment, with C{settings} on top."""
    values = {"PRIVATE_BACKEND_URL": BACKEND}
    values.update(settings)
    return values


class ErrorAssertions:
    def assertConfigError(self, environment, *fragments, overrides={}):
        """load_config refuses C{environment} with one line holding C{fragments}."""
        with self.assertRaises(ConfigError) as caught:
            load_config(environment, overrides)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message


class SettingsTableTests(SynchronousTestCase):
    def test_one_row_per_setting(self):
        names = [s.env for s in SETTINGS]
        self.assertEqual(len(names), len(set(names)))
        # Every setting is a field of Config, except the backend URL, which
        # becomes three (scheme, host, port); TRUST_PROXY adds why it is on,
        # WIGHAVEN_CONFIG the routes it gives and where the rest goes. The
        # settings of access control are the fields of one AuthSettings
        # (Config.auth).
        from wighaven.config.auth_settings import AuthSettings

        auth_rows = [s.env for s in SETTINGS if s.env in AUTH_ROWS]
        self.assertEqual(len(attrs.fields(Config)), len(names) - len(auth_rows) + 5 + 1)
        # Of the AuthSettings fields, hf stands for the seven HF_OAUTH_* rows, and
        # upstream_policy for the three rows of what the admin API's upstreams may be.
        self.assertEqual(len(attrs.fields(AuthSettings)), len(auth_rows) - 7 + 1 - 3 + 1)

    def test_auth_rows_are_all_known(self):
        self.assertEqual(set(AUTH_ROWS) - {s.env for s in SETTINGS}, set())

    def test_option_name(self):
        options = {s.env: s.option for s in SETTINGS}
        self.assertEqual(options["PRIVATE_BACKEND_URL"], "private-backend-url")
        self.assertEqual(options["UPSTREAM_TIMEOUT"], "upstream-timeout")
        self.assertEqual(options["PORT"], "port")

    def test_every_setting_has_help(self):
        for setting in SETTINGS:
            self.assertTrue(setting.help.strip(), setting.env)


class DefaultsTests(SynchronousTestCase, ErrorAssertions):
    def test_defaults(self):
        config = load_config(env())
        self.assertEqual(config.backend_scheme, "https")
        self.assertEqual(config.backend_host, "user-space.hf.space")
        self.assertEqual(config.backend_port, 443)
        self.assertIsNone(config.hf_token)
        self.assertEqual(config.token_header, "authorization")
        self.assertEqual(config.port, 7860)
        self.assertEqual(config.interface, "0.0.0.0")
        self.assertEqual(config.log_level, "info")
        self.assertIsNone(config.backend_ca_bundle)
        self.assertEqual(config.upstream_timeout, 60.0)
        self.assertEqual(config.pool_max_per_host, 256)
        self.assertEqual(config.pool_idle_timeout, 90.0)
        self.assertEqual(config.dashboard_path, "/")
        self.assertEqual(config.cors_allow_origins, ())
        self.assertFalse(config.trust_proxy)
        self.assertTrue(config.log_redact_query)
        self.assertFalse(config.dashboard_show_paths)
        self.assertEqual(config.live_max_watchers, 50)
        self.assertIn("content-type", config.cors_allow_headers)
        self.assertNotIn("cookie", config.cors_allow_headers)
        self.assertIsNone(config.max_websockets)
        self.assertIsNone(config.max_streams)
        self.assertEqual(config.slow_client_grace, 2.0)

    def test_tunnel_limits(self):
        self.assertEqual(tunnel_limits(load_config(env()), 1 << 20), (131072, 131072))
        self.assertEqual(tunnel_limits(load_config(env()), 64), (16, 16))
        config = load_config(env(MAX_WEBSOCKETS="7", MAX_STREAMS="9"))
        self.assertEqual(tunnel_limits(config, 1 << 20), (7, 9))
        self.assertConfigError(env(MAX_STREAMS="0"), "MAX_STREAMS must be at least 1")

    def test_cors_allow_headers(self):
        config = load_config(env(CORS_ALLOW_HEADERS="X-One, content-type ,,"))
        self.assertEqual(config.cors_allow_headers, ("x-one", "content-type"))
        self.assertConfigError(env(CORS_ALLOW_HEADERS="x one"), "CORS_ALLOW_HEADERS", "x one")

    def test_empty_value_means_default(self):
        """An empty variable of a setting with a default takes the default."""
        config = load_config(
            env(PORT="", LOG_LEVEL="", TOKEN_HEADER="", DASHBOARD_PATH="", UPSTREAM_TIMEOUT="")
        )
        self.assertEqual(config.port, 7860)
        self.assertEqual(config.log_level, "info")
        self.assertEqual(config.token_header, "authorization")
        self.assertEqual(config.dashboard_path, "/")
        self.assertEqual(config.upstream_timeout, 60.0)

    def test_unrelated_environment_ignored(self):
        config = load_config(env(HOME="/root", PATH="/bin"))
        self.assertEqual(config, load_config(env()))

    def test_frozen(self):
        config = load_config(env())
        with self.assertRaises(Exception):
            config.port = 1


class OverrideTests(SynchronousTestCase):
    def test_override_beats_environment(self):
        config = load_config(
            env(PORT="8000", LOG_LEVEL="debug", HF_TOKEN="hf_env"),
            {"PORT": "9000", "LOG_LEVEL": "error", "HF_TOKEN": "hf_cli"},
        )
        self.assertEqual(config.port, 9000)
        self.assertEqual(config.log_level, "error")
        self.assertEqual(config.hf_token, "hf_cli")

    def test_override_none_falls_back_to_environment(self):
        config = load_config(env(PORT="8000"), {"PORT": None})
        self.assertEqual(config.port, 8000)

    def test_override_without_environment(self):
        config = load_config({}, {"PRIVATE_BACKEND_URL": "http://127.0.0.1:5000"})
        self.assertEqual(config.backend_origin, "http://127.0.0.1:5000")

    def test_invalid_override_refused_even_with_valid_environment(self):
        with self.assertRaises(ConfigError):
            load_config(env(PORT="8000"), {"PORT": "not-a-port"})


class BackendUrlTests(ErrorAssertions, SynchronousTestCase):
    def test_missing(self):
        for environment in ({}, {"PRIVATE_BACKEND_URL": ""}, {"PRIVATE_BACKEND_URL": "   "}):
            self.assertConfigError(environment, "PRIVATE_BACKEND_URL must be set")

    def test_not_http(self):
        for url in ("ftp://host", "ws://host", "user-space.hf.space", "/path", "https://"):
            self.assertConfigError(
                env(PRIVATE_BACKEND_URL=url), "must be an http:// or https:// URL with a host"
            )

    def test_userinfo(self):
        for url in ("https://alice:pw123@host", "https://alice@host", "https://:hf_x@host"):
            message = self.assertConfigError(
                env(PRIVATE_BACKEND_URL=url), "must not contain user:password@", "HF_TOKEN"
            )
            # The credential in the URL is not echoed back.
            self.assertNotIn(url.split("//")[1].split("@")[0], message)

    def test_path_query_fragment(self):
        for url in (BACKEND + "/app", BACKEND + "/?x=1", BACKEND + "?x=1", BACKEND + "#top"):
            self.assertConfigError(env(PRIVATE_BACKEND_URL=url), "must be an origin only")

    def test_bad_port_or_brackets(self):
        for url in ("https://host:99999", "https://host:port", "http://[::1"):
            self.assertConfigError(env(PRIVATE_BACKEND_URL=url), "is not a valid URL")

    def test_port_zero_refused(self):
        self.assertConfigError(env(PRIVATE_BACKEND_URL="https://a.example:0"), "port 0")

    def test_invalid_hostname_refused(self):
        for url in ("https://a_b!x.example", "https://-lead.example", "https://a..b"):
            self.assertConfigError(env(PRIVATE_BACKEND_URL=url), "invalid hostname")

    def test_hostnames_idna_2008_refuses_are_refused(self):
        # Python's IDNA 2003 codec takes them; TLS (the idna package) could not
        # name them, and an A-label of a disallowed code point names nothing.
        for url in ("https://\U000e91bc", "https://xn--yl39e.example", "http://xn--yl39e"):
            self.assertConfigError(env(PRIVATE_BACKEND_URL=url), "invalid hostname")
        self.assertConfigError(env(PRIVATE_BACKEND_URL="https://my_app.example"),
                               "a hostname a TLS certificate cannot name: 'my_app.example'")
        config = load_config(env(PRIVATE_BACKEND_URL="http://my_app:8080"))  # no TLS: a fine name
        self.assertEqual(config.backend_host, "my_app")

    def test_international_hostname_sent_as_idna(self):
        config = load_config(env(PRIVATE_BACKEND_URL="https://bücher.example"))
        self.assertEqual(config.backend_host, "xn--bcher-kva.example")
        self.assertEqual(config.backend_origin, "https://xn--bcher-kva.example")

    def test_accepted_forms(self):
        cases = [
            ("https://user-space.hf.space", ("https", "user-space.hf.space", 443)),
            ("https://user-space.hf.space/", ("https", "user-space.hf.space", 443)),
            ("  http://localhost:8080  ", ("http", "localhost", 8080)),
            ("HTTPS://User-Space.HF.Space", ("https", "user-space.hf.space", 443)),
            ("http://[::1]:9000", ("http", "::1", 9000)),
            ("http://10.0.0.5", ("http", "10.0.0.5", 80)),
        ]
        for url, expected in cases:
            config = load_config(env(PRIVATE_BACKEND_URL=url))
            self.assertEqual(
                (config.backend_scheme, config.backend_host, config.backend_port), expected, url
            )


class BackendOriginTests(SynchronousTestCase):
    def test_netloc_and_origin(self):
        cases = [
            ("https://user-space.hf.space", "user-space.hf.space"),
            ("https://user-space.hf.space:443", "user-space.hf.space"),
            ("http://example.com:80", "example.com"),
            ("https://example.com:8443", "example.com:8443"),
            ("http://example.com:443", "example.com:443"),
            ("https://example.com:80", "example.com:80"),
            ("http://[::1]", "[::1]"),
            ("https://[2001:db8::1]:8443", "[2001:db8::1]:8443"),
        ]
        for url, netloc in cases:
            config = load_config(env(PRIVATE_BACKEND_URL=url))
            scheme = url.split(":", 1)[0]
            self.assertEqual(config.backend_netloc, netloc, url)
            self.assertEqual(config.backend_origin, scheme + "://" + netloc, url)


class TokenTests(ErrorAssertions, SynchronousTestCase):
    TOKEN = "hf_S3cr3tT0ken_abcdef"

    def test_token_kept_out_of_repr(self):
        config = load_config(env(HF_TOKEN=self.TOKEN))
        self.assertEqual(config.hf_token, self.TOKEN)
        self.assertNotIn(self.TOKEN, repr(config))
        self.assertNotIn(self.TOKEN, str(config))

    def test_token_stripped(self):
        self.assertEqual(load_config(env(HF_TOKEN="  %s " % self.TOKEN)).hf_token, self.TOKEN)

    def test_blank_token_is_none(self):
        for value in ("", "   "):
            self.assertIsNone(load_config(env(HF_TOKEN=value)).hf_token)

    def test_multiline_token_refused(self):
        for value in ("hf_a\nb", "hf_a\rb", "hf_a\x00b"):
            message = self.assertConfigError(env(HF_TOKEN=value), "HF_TOKEN must be a single line")
            self.assertNotIn("hf_a", message)

    def test_token_header(self):
        for value, expected in [
            ("authorization", "authorization"),
            ("X-HF-Authorization", "x-hf-authorization"),
            (" Authorization ", "authorization"),
        ]:
            self.assertEqual(load_config(env(TOKEN_HEADER=value)).token_header, expected)

    def test_bad_token_header(self):
        self.assertConfigError(
            env(TOKEN_HEADER="cookie"),
            "TOKEN_HEADER must be one of authorization, x-hf-authorization",
            "'cookie'",
        )


class PortTests(ErrorAssertions, SynchronousTestCase):
    def test_range(self):
        for value in ("0", "1", "8080", "65535"):
            self.assertEqual(load_config(env(PORT=value)).port, int(value))

    def test_too_large(self):
        self.assertConfigError(env(PORT="65536"), "PORT must be at most 65535", "'65536'")

    def test_negative(self):
        self.assertConfigError(env(PORT="-1"), "PORT must be at least 0", "'-1'")

    def test_not_a_number(self):
        for value in ("http", "80.5", "0x50"):
            self.assertConfigError(env(PORT=value), "PORT must be a number", repr(value))


class WorkersTests(ErrorAssertions, SynchronousTestCase):
    def test_default_is_one(self):
        self.assertEqual(load_config(env()).workers, 1)
        self.assertEqual(load_config(env(WORKERS="")).workers, 1)

    def test_whole_numbers(self):
        for value, workers in (("1", 1), ("2", 2), (" 3 ", 3), ("64", 64)):
            self.assertEqual(load_config(env(WORKERS=value)).workers, workers, value)

    def test_auto_is_one_per_core(self):
        self.assertEqual(load_config(env(WORKERS="auto")).workers, os.cpu_count())
        self.assertEqual(load_config(env(WORKERS="AUTO")).workers, os.cpu_count())
        self.patch(os, "cpu_count", lambda: 6)
        self.assertEqual(load_config(env(WORKERS="auto")).workers, 6)
        self.patch(os, "cpu_count", lambda: None)  # unknown: one
        self.assertEqual(load_config(env(WORKERS="auto")).workers, 1)

    def test_option_beats_environment(self):
        config = load_config(env(WORKERS="4"), {"WORKERS": "2"})
        self.assertEqual(config.workers, 2)

    def test_refused(self):
        for value in ("0", "-1", "x", "1.5", "65", "2 workers", "0x2"):
            self.assertConfigError(
                env(WORKERS=value), "WORKERS must be auto or a whole number from 1 to 64",
                repr(value),
            )


class NumberTests(ErrorAssertions, SynchronousTestCase):
    def test_values(self):
        config = load_config(
            env(UPSTREAM_TIMEOUT="2.5", POOL_MAX_PER_HOST="3", POOL_IDLE_TIMEOUT="0.5")
        )
        self.assertEqual(config.upstream_timeout, 2.5)
        self.assertEqual(config.pool_max_per_host, 3)
        self.assertEqual(config.pool_idle_timeout, 0.5)

    def test_minimums(self):
        for name, value, minimum in [
            ("UPSTREAM_TIMEOUT", "0", "0.001"),
            ("UPSTREAM_TIMEOUT", "-5", "0.001"),
            ("POOL_MAX_PER_HOST", "0", "1"),
            ("POOL_IDLE_TIMEOUT", "0", "0.001"),
        ]:
            self.assertConfigError(
                env(**{name: value}), "%s must be at least %s" % (name, minimum), repr(value)
            )

    def test_not_finite(self):
        for name in ("UPSTREAM_TIMEOUT", "POOL_IDLE_TIMEOUT"):
            for value in ("nan", "inf", "-inf"):
                self.assertConfigError(env(**{name: value}), name)

    def test_not_numbers(self):
        for name, value in [
            ("UPSTREAM_TIMEOUT", "soon"),
            ("POOL_MAX_PER_HOST", "1.5"),
            ("POOL_IDLE_TIMEOUT", "a while"),
        ]:
            self.assertConfigError(env(**{name: value}), "%s must be a number" % (name,))


class ChoiceTests(ErrorAssertions, SynchronousTestCase):
    def test_log_levels(self):
        for value, expected in [
            ("debug", "debug"),
            ("INFO", "info"),
            ("warn", "warn"),
            ("Warning", "warn"),
            ("error", "error"),
        ]:
            self.assertEqual(load_config(env(LOG_LEVEL=value)).log_level, expected)

    def test_bad_log_level(self):
        self.assertConfigError(
            env(LOG_LEVEL="verbose"), "LOG_LEVEL must be one of debug, info, warn, error"
        )

    def test_trust_proxy(self):
        for value in ("1", "true", "TRUE", "yes", "on"):
            self.assertTrue(load_config(env(TRUST_PROXY=value)).trust_proxy, value)
        for value in ("0", "false", "no", "off", ""):
            self.assertFalse(load_config(env(TRUST_PROXY=value)).trust_proxy, value)

    def test_trust_proxy_networks(self):
        trust = load_config(env(TRUST_PROXY="10.0.0.0/8, 192.0.2.1 ,::1")).trust_proxy
        self.assertTrue(trust)
        self.assertTrue(trust.trusts_peer("10.2.3.4"))
        self.assertTrue(trust.trusts_peer("192.0.2.1"))
        self.assertTrue(trust.trusts_peer("::1"))
        self.assertFalse(trust.trusts_peer("192.0.2.2"))
        self.assertFalse(trust.trusts_peer("127.0.0.1"))

    def test_trust_proxy_on_a_space(self):
        """Unset on a Hugging Face Space: its proxy is the one hop in front."""
        environment = env()
        environment["SPACE_ID"] = "owner/gateway"
        config = load_config(environment)
        self.assertTrue(config.trust_proxy.trusts_peer("10.1.2.3"))
        self.assertIn("SPACE_ID", config.trust_proxy_reason)
        environment["TRUST_PROXY"] = "false"
        self.assertFalse(load_config(environment).trust_proxy)
        self.assertFalse(load_config(env()).trust_proxy)

    def test_bad_trust_proxy(self):
        self.assertConfigError(
            env(TRUST_PROXY="maybe"),
            "TRUST_PROXY must be true, false or a comma-separated list of CIDRs, got 'maybe'",
        )
        self.assertConfigError(env(TRUST_PROXY="10.0.0.0/33"), "TRUST_PROXY", "10.0.0.0/33")

    def test_interface(self):
        for value in ("127.0.0.1", "0.0.0.0", "::", "::1", " 10.1.2.3 "):
            self.assertEqual(load_config(env(INTERFACE=value)).interface, value.strip())

    def test_bad_interface(self):
        for value in ("localhost", "0.0.0.0:80", "256.1.1.1"):
            self.assertConfigError(
                env(INTERFACE=value), "INTERFACE must be an IP address", repr(value)
            )


class DashboardPathTests(ErrorAssertions, SynchronousTestCase):
    def test_accepted(self):
        for value in ("/", "/_gateway/", "/dashboard"):
            self.assertEqual(load_config(env(DASHBOARD_PATH=value)).dashboard_path, value)

    def test_refused(self):
        for value in ("dashboard", "/d?x=1", "/d#top"):
            self.assertConfigError(
                env(DASHBOARD_PATH=value), "DASHBOARD_PATH must be a path starting with /"
            )

    def test_reserved(self):
        self.assertConfigError(
            env(DASHBOARD_PATH="/gateway-health"), "DASHBOARD_PATH must not be /gateway-health"
        )


class CorsOriginsTests(ErrorAssertions, SynchronousTestCase):
    def test_list(self):
        config = load_config(
            env(CORS_ALLOW_ORIGINS=" https://a.example/, http://b.example:8080 ,, ")
        )
        self.assertEqual(config.cors_allow_origins, ("https://a.example", "http://b.example:8080"))

    def test_star(self):
        self.assertEqual(load_config(env(CORS_ALLOW_ORIGINS="*")).cors_allow_origins, ("*",))

    def test_unset_or_blank(self):
        for value in (None, "", " , "):
            environment = env() if value is None else env(CORS_ALLOW_ORIGINS=value)
            self.assertEqual(load_config(environment).cors_allow_origins, ())

    def test_not_an_origin(self):
        self.assertConfigError(
            env(CORS_ALLOW_ORIGINS="https://a.example, a.example"),
            "CORS_ALLOW_ORIGINS must list origins like https://example.com",
            "'a.example'",
        )

    def test_origin_with_path_refused(self):
        """A browser's Origin never has a path, so such an entry could never match."""
        self.assertConfigError(
            env(CORS_ALLOW_ORIGINS="https://a.example/app"), "CORS_ALLOW_ORIGINS", "/app"
        )


class CABundleTests(ErrorAssertions, SynchronousTestCase):
    def test_valid_pem(self):
        path = pki().ca_pem
        self.assertEqual(load_config(env(BACKEND_CA_BUNDLE=path)).backend_ca_bundle, path)

    def test_missing_file(self):
        path = os.path.abspath(self.mktemp())
        self.assertConfigError(
            env(BACKEND_CA_BUNDLE=path), "BACKEND_CA_BUNDLE %r cannot be read" % (path,)
        )

    def test_directory(self):
        path = os.path.abspath(self.mktemp())
        os.mkdir(path)
        self.assertConfigError(env(BACKEND_CA_BUNDLE=path), "cannot be read")

    def test_not_pem(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"this is not a certificate\n")
        self.assertConfigError(
            env(BACKEND_CA_BUNDLE=path), "BACKEND_CA_BUNDLE %r holds no PEM certificate" % (path,)
        )

    def test_empty_means_none(self):
        self.assertIsNone(load_config(env(BACKEND_CA_BUNDLE="")).backend_ca_bundle)
