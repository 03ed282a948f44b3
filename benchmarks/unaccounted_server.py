"""The comparison point of benchmarks/accounting_cost.py: `dxserve serve` exactly, but with the
audit trail's middleware hook, usage metering, quotas and rate limiting left out (no setting or
command can do this; only this benchmark does, by replacing those three methods).

    DXSERVE_DATA_DIR=… DXSERVE_MODEL_REPOSITORY=… python benchmarks/unaccounted_server.py PORT
"""

import sys
from typing import Any

import uvicorn

from dxserve.api.app import create_app
from dxserve.server import build_services
from dxserve.settings import Settings


async def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


if __name__ == "__main__":
    services = build_services(Settings())
    services.usage.stage = lambda *args, **kwargs: None  # type: ignore[method-assign]
    services.throttle = _nothing  # type: ignore[method-assign]
    services.check_quota = _nothing  # type: ignore[method-assign]
    uvicorn.run(
        create_app(services, audit=False), host="127.0.0.1", port=int(sys.argv[1]), log_config=None
    )
