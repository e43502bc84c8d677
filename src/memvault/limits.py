"""Every size and count limit in one place; `docs/limits.md` lists the same numbers.

A value over a size limit raises `PayloadTooLargeError`; a malformed value raises
`InvalidArgumentError`. Both are checked before anything is written.
"""

from __future__ import annotations

MAX_CONTENT_CHARS = 65_536
"""Memory content, message content, summary content (characters)."""

COMPRESS_CONTENT_FROM = 16_384
"""Memory content longer than this (characters) is stored zstd-compressed; keyword search
and the search context read its first this-many characters."""

MAX_USER_ID_CHARS = 128
MAX_USERNAME_CHARS = 256
MAX_NAMESPACE_CHARS = 128
MAX_KEY_CHARS = 256
MAX_MEMORY_TYPE_CHARS = 32
MAX_CATEGORY_CHARS = 64
MAX_AGENT_ID_CHARS = 128

MAX_TAGS = 64
MAX_TAG_CHARS = 64

MAX_JSON_BYTES = 16_384
"""Serialized size of `metadata`, a user `profile`, session metadata (UTF-8 bytes)."""
MAX_JSON_DEPTH = 8

MAX_GLOBAL_VALUE_BYTES = 65_536
"""Serialized size of one global-context value."""

MAX_BATCH = 1_000
"""Memories in one batch create or batch get."""

MAX_PAGE_LIMIT = 1_000
DEFAULT_PAGE_LIMIT = 100

MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
"""Ten years."""

MAX_MESSAGES_LIMIT = 100_000
"""Upper bound for the `MAX_MESSAGES` setting."""

MESSAGE_ROLES = ("user", "assistant", "system", "tool")

NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
MEMORY_TYPE_PATTERN = r"^[a-z][a-z0-9_]*$"

MAX_QUERY_CHARS = 4_096
"""Search query text."""
MAX_CHARACTER_PAIRS = 512
"""Distinct character pairs of Chinese, Japanese or Korean text a memory adds to the
full-text index (the first ones: `storage.search_text.unspaced_grams`)."""
MAX_SEARCH_K = 100

MAX_EMBEDDING_DIMENSION = 8_192
"""Numbers in a caller-given embedding (`add(..., embedding=[...])`)."""

MAX_REMEMBER_MESSAGES = 100
"""Messages in one `remember` call (`POST /v1/users/{user_id}/remember`)."""

MAX_FACTS_PER_MESSAGE = 20
"""Facts kept from one message (an extractor's further answers are dropped)."""

MAX_FACT_CHARS = 500
"""An extracted fact's text; a longer one from a model is dropped."""

MAX_FACT_SOURCES = 20
"""Message ids a fact keeps in metadata `sources` (the newest)."""

MAX_RATE_PER_MINUTE = 1_000_000
"""Upper bound for an API key's rate limit (requests per minute)."""

MAX_REQUEST_BYTES = 8 * 1024 * 1024
"""Upper bound for the `max_request_bytes` setting (an HTTP request body)."""

MAX_ZMQ_MESSAGE_BYTES = 64 * 1024 * 1024
"""Upper bound for the `zmq_max_message_bytes` setting (one orchestrator message)."""

MAX_ZMQ_QUEUED = 10_000
"""Orchestrator requests waiting for a worker, at most; past it one answers UNAVAILABLE."""
