"""Rollout side: generation engines, the episode runner and rollout workers (Ray at the edge)."""
