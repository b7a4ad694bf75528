"""inventory: a Flask service under gunicorn that calls billing with requests.

    SPIFFILE_DIR=... BILLING_URL=http://127.0.0.1:8000 gunicorn inventory:app -b 127.0.0.1:8001

Only billing may read the stock; only orders may ask for a reorder, which
inventory checks with billing.
"""

import os

import requests
from flask import Flask, g

import spiffile.integrations
from spiffile import Identity
from spiffile.integrations.flask import Spiffile, require_caller
from spiffile.integrations.requests import SpiffileAuth

spiffile.integrations.log_rejections()  # Why a request got its 401/403, on stderr.
identity = Identity.from_env()
billing = requests.Session()
billing.auth = SpiffileAuth(identity, "billing")
BILLING_URL = os.environ["BILLING_URL"]

app = Flask(__name__)
Spiffile(app, identity)


@app.get("/stock")
@require_caller(allow=["billing"])
def stock() -> dict[str, object]:
    return {"for": str(g.spiffile_caller.id), "widgets": 42}


@app.get("/reorder")
@require_caller(allow=["orders"])
def reorder() -> dict[str, object]:
    invoices = billing.get(f"{BILLING_URL}/invoices", timeout=10).json()
    return {"for": str(g.spiffile_caller.id), "billed_to": invoices["for"], "ordered": 10}
