"""Thin, optional glue between an :class:`~spiffile.Identity` and web frameworks.

Each module serves users of one framework and is imported only by them; none
is imported by ``spiffile`` itself, so the core never needs these frameworks.
No rule lives here: clients call :meth:`Identity.token`, servers call
:meth:`Identity.verify`.

- ``spiffile.integrations.httpx``: ``SpiffileAuth`` for sync and async
  ``httpx`` clients (extra ``spiffile[httpx]``).
- ``spiffile.integrations.requests``: ``SpiffileAuth`` for ``requests``
  (extra ``spiffile[requests]``).
- ``spiffile.integrations.asgi``: ``SpiffileMiddleware``, pure ASGI (Starlette,
  FastAPI, Django, Quart, ... under any ASGI server); ``require_caller`` works
  as a FastAPI dependency.  Needs no extra.
- ``spiffile.integrations.wsgi``: ``SpiffileMiddleware``, pure WSGI (Flask,
  Django, Pyramid, ...).  Needs no extra.
"""
