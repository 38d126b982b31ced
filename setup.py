"""Packaging of WigHaven Gateway.

`pip install .` (a normal, non-editable install) puts the `wighaven` package
and the twistd plugin twisted/plugins/wighaven_plugin.py into site-packages,
so `twistd wighaven` works from any directory.

The plugin rides along as the package "twisted.plugins", which on purpose has
NO __init__.py in this repository: only wighaven_plugin.py is copied into
Twisted's own site-packages/twisted/plugins/, and Twisted's twisted/__init__.py
and twisted/plugins/__init__.py are never installed or overwritten.
(setuptools prints "package init file 'twisted/plugins/__init__.py' not
found": that is expected.) An editable install (`pip install -e .`) does not
expose the plugin to twistd; use a normal install.

Dependencies live in two places, on purpose:
- INSTALL_REQUIRES below: the compatible ranges, what `pip install .` asks
  for, so that an install can take the security releases of Twisted,
  cryptography and pyOpenSSL as they come;
- requirements.txt: the lock, one tested set of exact versions inside those
  ranges, which the Docker image and CI install (`-r requirements.txt`).
Twisted is capped: the gateway uses private names of Twisted, each one
covered by a test in tests/test_twisted_private.py, and the range is the
releases on which those tests pass. Raise the cap once they pass on a newer
release (and move the lock to it).
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "wighaven", "__init__.py"), encoding="utf-8") as f:
        match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", f.read(), re.M)
    if match is None:
        raise RuntimeError("__version__ not found in wighaven/__init__.py")
    return match.group(1)


# The lower bounds were tested together, as were the pins of requirements.txt.
INSTALL_REQUIRES = [
    # 26.4.0 and 26.10.0 pass tests/test_twisted_private.py and the engine's
    # tests. 25.5.0 passes them with pyOpenSSL 25 only: its TLS servers change
    # a context already in use, which pyOpenSSL 26 refuses. Older releases
    # have no twisted.web.websocket (nor _protocolUpgradeForWebsockets).
    "twisted>=26.4.0,<27",
    "treq>=24.9.1",
    "klein>=24.8.0",
    "pyopenssl>=25.3.0",
    "service-identity>=24.2.0",
    "attrs>=23.1.0",
    "cryptography>=46.0.0",
    # What TLS names a host with (Twisted's optionsForClientTLS): upstream hosts are checked
    # with it (wighaven/config/settings.py).
    "idna>=3.7",
    "zope.interface>=7.2",
    "prometheus-client>=0.20.0",
    # Twisted's WebSocket server (the dashboard's live feed) runs on wsproto.
    "wsproto>=1.2.0",
    # httptools (llhttp) parses backend responses: wighaven/proxy/upstream_protocol.py.
    "httptools>=0.6,<1",
    # Passwords are Argon2id hashes: wighaven/auth/passwords.py.
    "argon2-cffi>=23.1.0",
    # Access tokens are JWTs: wighaven/auth/tokens.py.
    "pyjwt>=2.8.0",
    # Sign in with Hugging Face: the ID token checked against the provider's
    # JWKS (wighaven/auth/oidc.py).
    "joserfc>=1.0.0",
    # TOTP second factors: wighaven/auth/second_factor.py.
    "pyotp>=2.9.0",
    # The config file is TOML: tomllib from Python 3.11 on, its backport before.
    "tomli>=2.0.1; python_version < '3.11'",
    # The admin API's configuration export is written as TOML: wighaven/admin/config_io.py.
    "tomli-w>=1.0.0",
]


setup(
    name="wighaven-gateway",
    version=read_version(),
    description=(
        "A Twisted streaming reverse proxy that puts a private Hugging Face Space "
        "on the public internet, adding the owner's token."
    ),
    python_requires=">=3.10",
    packages=find_packages(exclude=["tests", "tests.*"]) + ["twisted.plugins"],
    # The dashboard's HTML template, style sheet and script.
    package_data={"wighaven.web": ["*.html", "*.css", "*.js", "admin_ui/*"]},
    install_requires=INSTALL_REQUIRES,
    # The console command: users and API keys against DATABASE_URL (wighaven/cli.py).
    entry_points={"console_scripts": ["wighaven = wighaven.cli:main"]},
    zip_safe=False,
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: Proxy Servers",
    ],
)
