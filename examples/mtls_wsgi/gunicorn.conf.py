"""gunicorn settings for billing: mutual TLS from its X.509-SVID files, only orders admitted.

    spiffile exec --root ./identity billing --signal none -- \
        gunicorn -c gunicorn.conf.py billing_wsgi:app

``spiffile exec`` gives gunicorn billing's ``SPIFFILE_*`` environment and
re-issues its SVID past half its lifetime; every new connection presents the
newest one (gunicorn asks for the context per connection), so no signal and
no restart are needed.
"""

from spiffile import Identity
from spiffile.integrations.mtls import gunicorn_config

globals().update(gunicorn_config(Identity.from_env(), allow=["orders"]))
bind = ["127.0.0.1:0"]  # main.py reads the port from the "Listening at" line.
worker_class = "gthread"
workers = 2
threads = 4
loglevel = "info"
