"""Tests for L{wighaven.run.tap}: one twistd option per row of
L{wighaven.config.settings.SETTINGS}, a configuration error stopping start-up with
one 'wighaven: ...' line on stderr and exit status 1, and a good
configuration giving a L{GatewayService} whose settings take the options
over the environment.
"""

import io
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from wighaven.config.settings import SETTINGS
from wighaven.run.service import GatewayService
from wighaven.run.tap import Options, makeService

BACKEND = "https://user-space.hf.space"


class OptionsTests(SynchronousTestCase):
    def test_one_option_per_setting(self):
        names = sorted(p[0] for p in Options.optParameters)
        self.assertEqual(names, sorted(s.option for s in SETTINGS))
        for name in ("port", "interface", "private-backend-url", "upstream-timeout", "hf-token",
                     "backend-ca-bundle", "dashboard-path", "trust-proxy"):
            self.assertIn(name, names)

    def test_unset_options_are_none(self):
        options = Options()
        options.parseOptions([])
        for setting in SETTINGS:
            self.assertIsNone(options[setting.option], setting.option)

    def test_parse(self):
        options = Options()
        options.parseOptions(
            ["--port", "8080", "--interface=127.0.0.1", "--private-backend-url", BACKEND,
             "--upstream-timeout", "5"]
        )
        self.assertEqual(options["port"], "8080")
        self.assertEqual(options["interface"], "127.0.0.1")
        self.assertEqual(options["private-backend-url"], BACKEND)
        self.assertEqual(options["upstream-timeout"], "5")

    def test_help_names_environment_and_default(self):
        help_text = {p[0]: p[3] for p in Options.optParameters}
        self.assertIn("(env PORT)", help_text["port"])
        self.assertIn("[default: 7860]", help_text["port"])
        self.assertIn("(env PRIVATE_BACKEND_URL)", help_text["private-backend-url"])
        self.assertNotIn("[default:", help_text["private-backend-url"])


class MakeServiceTests(SynchronousTestCase):
    def setUp(self):
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)
        self.patch(os, "environ", {})

    def options(self, *argv):
        options = Options()
        options.parseOptions(list(argv))
        # As under `twistd -n`: the LOG_LEVEL observer writes to stdout.
        options.parent = {"nodaemon": True}
        return options

    def assertExits(self, options, *fragments):
        with self.assertRaises(SystemExit) as caught:
            makeService(options)
        self.assertEqual(caught.exception.code, 1)
        text = self.stderr.getvalue()
        self.assertTrue(text.startswith("wighaven: "), text)
        self.assertTrue(text.endswith("\n"))
        self.assertEqual(text.count("\n"), 1, text)
        for fragment in fragments:
            self.assertIn(fragment, text)

    def test_missing_backend(self):
        self.assertExits(self.options(), "PRIVATE_BACKEND_URL must be set")

    def test_bad_option(self):
        self.patch(os, "environ", {"PRIVATE_BACKEND_URL": BACKEND})
        self.assertExits(self.options("--port", "70000"), "PORT must be at most 65535")

    def test_bad_environment(self):
        self.patch(os, "environ", {"PRIVATE_BACKEND_URL": BACKEND, "UPSTREAM_TIMEOUT": "never"})
        self.assertExits(self.options(), "UPSTREAM_TIMEOUT must be a number")

    def test_token_not_echoed(self):
        token = "hf_S3cr3t\nsecond-line"
        self.patch(os, "environ", {"PRIVATE_BACKEND_URL": BACKEND, "HF_TOKEN": token})
        self.assertExits(self.options(), "HF_TOKEN must be a single line")
        self.assertNotIn("hf_S3cr3t", self.stderr.getvalue())

    def test_good_config(self):
        self.patch(
            os,
            "environ",
            {
                "PRIVATE_BACKEND_URL": "http://env.example",
                "HF_TOKEN": "hf_env",
                "PORT": "1111",
                "LOG_LEVEL": "debug",
                "UPSTREAM_TIMEOUT": "10",
            },
        )
        service = makeService(
            self.options(
                "--private-backend-url", BACKEND, "--port", "0", "--interface", "127.0.0.1",
                "--upstream-timeout", "2.5",
            )
        )
        self.assertIsInstance(service, GatewayService)
        config = service.config
        self.assertEqual(config.backend_origin, BACKEND)
        self.assertEqual(config.port, 0)
        self.assertEqual(config.interface, "127.0.0.1")
        self.assertEqual(config.upstream_timeout, 2.5)
        # Settings given only in the environment still apply.
        self.assertEqual(config.hf_token, "hf_env")
        self.assertEqual(config.log_level, "debug")
        self.assertEqual(self.stderr.getvalue(), "")
        self.assertFalse(service.running)


class WorkersTests(SynchronousTestCase):
    """WORKERS above 1 makes the service a supervisor, and only in the foreground."""

    setUp = MakeServiceTests.setUp
    options = MakeServiceTests.options
    assertExits = MakeServiceTests.assertExits

    def test_workers_give_a_supervisor_whose_workers_get_the_options(self):
        from wighaven.run.cluster import Supervisor

        self.patch(os, "environ", {"PRIVATE_BACKEND_URL": BACKEND, "HF_TOKEN": "hf_env"})
        service = makeService(self.options("--workers", "2", "--port", "0", "--upstream-timeout", "7"))
        self.assertIsInstance(service, Supervisor)
        self.assertEqual(service.config.workers, 2)
        # The command line reaches the workers through their environment.
        self.assertEqual(service._env["UPSTREAM_TIMEOUT"], "7")
        self.assertEqual(service._env["HF_TOKEN"], "hf_env")
        self.assertEqual(service._env["WORKERS"], "1")
        self.assertFalse(service.running)

    def test_workers_refused_when_daemonized(self):
        self.patch(os, "environ", {"PRIVATE_BACKEND_URL": BACKEND})
        options = self.options("--workers", "2")
        options.parent = {"nodaemon": False}
        self.assertExits(options, "WORKERS above 1 needs twistd -n")

    def test_one_worker_may_be_daemonized(self):
        self.patch(os, "environ", {"PRIVATE_BACKEND_URL": BACKEND})
        options = self.options("--port", "0")
        options.parent = {"nodaemon": False, "logfile": os.devnull}
        self.assertIsInstance(makeService(options), GatewayService)
