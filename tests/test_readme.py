"""The README stays true: every setting is documented, and the test command
it gives is the one CI runs."""

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from wighaven.config.settings import SETTINGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


class ReadmeTests(SynchronousTestCase):
    def setUp(self):
        self.readme = read("README.md")

    def test_every_setting_in_the_reference(self):
        for setting in SETTINGS:
            row = re.search(r"^\| `%s` \| `--%s` \|" % (setting.env, setting.option), self.readme, re.M)
            self.assertIsNotNone(row, setting.env)

    def test_ci_runs_the_readme_test_command(self):
        commands = re.findall(r"```sh\n(.*?)\n```", self.readme, re.S)
        test_command = [c for c in commands if "trial" in c][0]
        runner = test_command.split("&&")[-1].strip()
        self.assertEqual(runner, "python -m twisted.trial tests")
        self.assertIn('"$PY" -m twisted.trial tests', read(".ci/run"))

    def test_dockerfile_runs_the_plugin(self):
        dockerfile = read("Dockerfile")
        self.assertIn("wighaven", dockerfile)
        self.assertIn("7860", dockerfile)
        self.assertIn("/gateway-health", dockerfile)

    def test_dockerfile_trusts_no_proxy(self):
        """The image is neutral: run elsewhere, clients can't forge X-Forwarded-*."""
        dockerfile = read("Dockerfile")
        env_lines = [line for line in dockerfile.splitlines()
                     if not line.lstrip().startswith("#")]
        self.assertNotIn("TRUST_PROXY", "\n".join(env_lines))
        self.assertIn("TRUST_PROXY=true", self.readme)
