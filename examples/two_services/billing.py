"""billing: a FastAPI service under uvicorn that calls inventory with httpx.

    SPIFFILE_DIR=... INVENTORY_URL=http://127.0.0.1:8001 uvicorn billing:app --port 8000

Every route needs a verified caller except the docs and /healthz; orders and
inventory may call at all, and only orders may ask for the summary.
"""

import os
from typing import Annotated

import httpx
from fastapi import FastAPI, Security

import spiffile.integrations
from spiffile import Caller, Identity
from spiffile.integrations.asgi import SpiffileMiddleware
from spiffile.integrations.fastapi import DOCS_PATHS, require_caller
from spiffile.integrations.httpx import SpiffileAuth

spiffile.integrations.log_rejections()  # Why a request got its 401/403, on stderr.
identity = Identity.from_env()
inventory = httpx.Client(
    base_url=os.environ["INVENTORY_URL"], auth=SpiffileAuth(identity, "inventory"), timeout=10
)

app = FastAPI(title="billing")
app.add_middleware(
    SpiffileMiddleware,
    identity=identity,
    allow=["orders", "inventory"],
    exempt_paths=[*DOCS_PATHS, "/healthz"],
)


@app.get("/invoices")
def invoices(caller: Annotated[Caller, Security(require_caller())]) -> dict[str, object]:
    return {"for": str(caller.id), "invoices": ["inv-1", "inv-2"]}


@app.get("/summary")
def summary(
    caller: Annotated[Caller, Security(require_caller(allow=["orders"]))],
) -> dict[str, object]:
    stock = inventory.get("/stock").json()
    return {"for": str(caller.id), "invoices": 2, "widgets": stock["widgets"]}


@app.get("/healthz")
def healthz() -> dict[str, bool]:
    return {"ok": True}
