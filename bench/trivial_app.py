"""The yardstick of bench_rest.py: the smallest FastAPI endpoint, served the same way."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(
    telemetry={
        "tracing": False,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
    }
)


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
