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


def read_requirements(name="requirements.txt"):
    """Requirement lines of C{name}, without comments, blanks and pip options."""
    requirements = []
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                requirements.append(line)
    return requirements


setup(
    name="wighaven-gateway",
    version=read_version(),
    description=(
        "A Twisted streaming reverse proxy that puts a private Hugging Face Space "
        "on the public internet, adding the owner's token."
    ),
    python_requires=">=3.10",
    packages=find_packages(exclude=["tests", "tests.*"]) + ["twisted.plugins"],
    install_requires=read_requirements(),
    zip_safe=False,
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: Proxy Servers",
    ],
)
