"""The Fleet API client: authentication, rate limit, retries, paging, errors."""
