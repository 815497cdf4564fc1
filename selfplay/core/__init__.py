"""The shared base: what the rollout side (``actors``) and the learning side (``learners``) both
use. It imports nothing from the application above it (driver, CLI, evaluation, play)."""
