"""The notification receiver: what the Fleet API posts to a callback's webhook, recorded durably."""
