"""The Fleet API client: authentication, rate limit, retries, paging, errors, the run's breaker, the wire format.

The defaults below are the client's, and the settings' (reconciler.yaml documents the same values in its
schema; a test keeps them equal). This package's __init__ imports nothing, so the settings can use them
without loading the HTTP client.
"""

RATE_LIMIT = 20.0  # requests per second
PARALLELISM = 8  # vehicles worked on at once
TIMEOUT = 30.0  # seconds per request
MAX_RETRY_WAIT = 60.0  # longest wait (s) the API may ask for before a run stops instead
