"""memvault: long-term memory for AI assistants and agents.

```python
from memvault import MemVault

with MemVault() as vault:                       # a SQLite file in your data directory
    vault.add("alice", "Prefers green tea while working late", tags=["drinks"])
    hits = vault.search("alice", "what does she drink at night?")
```
"""

from importlib.metadata import PackageNotFoundError, version

from memvault.client import AsyncMemVault, MemVault
from memvault.clock import Clock, FrozenClock, SystemClock
from memvault.config import Settings, load_settings
from memvault.errors import (
    ConfigurationError,
    ConflictError,
    ErrorCode,
    InvalidArgumentError,
    MemvaultError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
)
from memvault.models import (
    ContextEntry,
    Filters,
    HistoryEntry,
    Memory,
    MemoryPatch,
    Message,
    Metrics,
    NewMemory,
    Page,
    SearchHit,
    Session,
    Summary,
    User,
)
from memvault.storage.base import PurgeCounts

try:
    __version__ = version("memvault")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = [
    "AsyncMemVault",
    "Clock",
    "ConfigurationError",
    "ConflictError",
    "ContextEntry",
    "ErrorCode",
    "Filters",
    "FrozenClock",
    "HistoryEntry",
    "InvalidArgumentError",
    "MemVault",
    "Memory",
    "MemoryPatch",
    "MemvaultError",
    "Message",
    "Metrics",
    "NewMemory",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PurgeCounts",
    "RateLimitedError",
    "SearchHit",
    "Session",
    "Settings",
    "Summary",
    "SystemClock",
    "UnauthenticatedError",
    "UnavailableError",
    "User",
    "__version__",
    "load_settings",
]
