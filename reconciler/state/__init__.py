"""Recorded state: what reconciler last did and saw, its backends, the writers' lock, journal and events."""
