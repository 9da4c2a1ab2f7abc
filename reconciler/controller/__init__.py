"""The controller, `reconciler serve`: the webhook receiver, plus continuous reconciliation by the replica that
holds the leader lease (the config repo fetched, validated, planned and applied within the sync windows),
with Prometheus metrics, health and readiness endpoints, and structured logs."""
