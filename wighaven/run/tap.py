"""twistd glue: command-line options (mirroring the environment) -> config
-> service. Nothing else lives here.

Every setting of L{wighaven.config.settings.SETTINGS} is an option named after its
environment variable (PRIVATE_BACKEND_URL -> --private-backend-url, PORT ->
--port). A configuration error stops start-up with one line on stderr and
exit status 1, before anything listens; --check-config stops there either
way (exit 0 when the configuration is valid).
"""

from __future__ import annotations

import base64
import os
import sys

from twisted.python import usage

from ..config.settings import SETTINGS, ConfigError, load_config
from ..observe.logs import feed_log_ring, log_ring, twistd_observer

__all__ = ["Options", "makeService"]


def _option_help(setting) -> str:
    default = " [default: %s]" % setting.default if setting.default is not None else ""
    return "%s (env %s)%s" % (setting.help, setting.env, default)


class Options(usage.Options):
    """Options of `twistd wighaven`; unset ones fall back to the environment."""

    synopsis = "[options]"
    longdesc = (
        "WigHaven Gateway: a streaming reverse proxy in front of a private Hugging Face "
        "Space. Each option mirrors an environment variable; the option wins."
    )
    optParameters = [[s.option, None, None, _option_help(s)] for s in SETTINGS]
    optFlags = [[
        "check-config", None,
        "Validate the settings and the config file (WIGHAVEN_CONFIG), print one line and "
        "exit: 0 when valid, 1 with what to fix. Nothing listens.",
    ]]


def makeService(options):
    """Validate the configuration and build the gateway service."""
    from twisted.internet import reactor

    from .service import GatewayService  # imported late: --help needs no reactor

    overrides = {s.env: options[s.option] for s in SETTINGS}
    twistd_options = getattr(options, "parent", None)
    try:
        config = load_config(os.environ, overrides)
        if config.workers > 1 and twistd_options is not None and not twistd_options.get("nodaemon"):
            # Workers write their lines to the standard output they inherit,
            # which a daemon has closed: they would be lost.
            raise ConfigError("WORKERS above 1 needs twistd -n (--nodaemon): workers log to stdout")
    except ConfigError as e:
        sys.stderr.write("wighaven: %s\n" % (e,))
        sys.stderr.flush()
        raise SystemExit(1)
    if options["check-config"]:
        sys.stdout.write("wighaven: configuration is valid: %d routes (%s); %s\n" % (
            len(config.routes), ", ".join(r.name for r in config.routes), config.routes_note))
        sys.stdout.flush()
        raise SystemExit(0)
    if config.workers > 1:
        from .cluster import Supervisor

        # The workers keep their own recent lines (wighaven.run.worker): no ring here.
        observer = twistd_observer(twistd_options, config.log_level, config.log_format)

        # The workers load the same settings from their environment, and
        # sign affinity cookies with one secret, so any worker knows them.
        env = dict(os.environ)
        env.update({name: value for name, value in overrides.items() if value is not None})
        env.setdefault("AFFINITY_SECRET", base64.urlsafe_b64encode(config.affinity_secret).decode())
        return Supervisor(config, reactor, env, log_observer=observer, handle_signals=True)
    # The process's recent lines (the admin API's) come through the observer
    # twistd logs with, behind its LOG_LEVEL filter; with --syslog, which is
    # left to twistd, from the global publisher.
    observer = twistd_observer(twistd_options, config.log_level, config.log_format, log_ring())
    if observer is None:
        feed_log_ring(config.log_level)
    return GatewayService(config, reactor, log_observer=observer, handle_signals=True)
