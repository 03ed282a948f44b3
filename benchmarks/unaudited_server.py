"""The comparison point of benchmarks/audit_cost.py: `dxserve serve` exactly, but with the audit
trail's middleware hook left out (nothing else can turn it off).

    DXSERVE_DATA_DIR=… DXSERVE_MODEL_REPOSITORY=… python benchmarks/unaudited_server.py PORT
"""

import sys

import uvicorn

from dxserve.api.app import create_app
from dxserve.server import build_services
from dxserve.settings import Settings

if __name__ == "__main__":
    services = build_services(Settings())
    uvicorn.run(
        create_app(services, audit=False), host="127.0.0.1", port=int(sys.argv[1]), log_config=None
    )
