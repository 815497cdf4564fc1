"""The training loop: the driver, the rollout workers' pool and restarts, the learner's ranks."""
