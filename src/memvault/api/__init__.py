"""The REST door (FastAPI): `create_app`, served by `memvault serve`."""

from memvault.api.app import create_app

__all__ = ["create_app"]
