"""Thin, optional glue between an :class:`~spiffile.Identity` and frameworks.

Each module serves users of one framework and is imported only by them; none
is imported by ``spiffile`` itself, so the core never needs these frameworks.
No rule lives here: clients call :meth:`Identity.token`, servers call
:meth:`Identity.verify` and an :mod:`spiffile.authorize` authorizer.

- ``spiffile.integrations.httpx`` / ``.requests``: ``SpiffileAuth`` for
  clients, one receiver or several (extras ``spiffile[httpx]``,
  ``spiffile[requests]``).
- ``spiffile.integrations.asgi`` / ``.wsgi``: ``SpiffileMiddleware`` with
  per-path rules, exempt and optional paths.  Need no extra.
- ``spiffile.integrations.fastapi``: ``require_caller(allow=...)`` and
  ``optional_caller`` dependencies, shown in OpenAPI (``spiffile[fastapi]``).
- ``spiffile.integrations.flask``: ``Spiffile(app, identity)`` and the
  ``@require_caller(allow=...)`` decorator (``spiffile[flask]``).
- ``spiffile.integrations.grpc``: call credentials and sync/asyncio server
  interceptors with per-method rules; mutual TLS with X.509-SVIDs (server
  credentials, peer interceptors, checked channels) (``spiffile[grpc]``).

Rejections are answered coarsely and explained in the log: call
:func:`log_rejections` once to see why a request got its 401 or 403.
"""

from __future__ import annotations

import logging
import sys
from typing import Final, TextIO

__all__ = ["LOGGER_NAME", "log_rejections"]

#: The logger every integration explains its 401s and 403s on (at INFO).
LOGGER_NAME: Final = "spiffile.integrations"
_FORMAT: Final = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def log_rejections(level: int | str = logging.INFO, stream: TextIO | None = None) -> logging.Logger:
    """Print why requests were refused to *stream* (stderr), whatever the server's logging.

    uvicorn and gunicorn configure only their own loggers, so the library's
    INFO lines reach no handler by default.  This one line in the
    application module makes them visible under either server::

        spiffile.integrations.log_rejections()

    It sets the ``spiffile.integrations`` logger to *level* and gives it one
    stream handler (calling it again replaces that handler, never adds a
    second).  An application with its own logging configuration does not
    need it: configure the ``spiffile.integrations`` logger there instead
    (records still propagate, so a root handler would print them twice).
    Each line names the status, method, path, error code and reason, and the
    SPIFFE IDs and rule involved; never a token or key (PROFILE.md §10).
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    for handler in list(logger.handlers):
        if getattr(handler, "_spiffile_rejections", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler._spiffile_rejections = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    return logger
