"""Where a run goes and whether it can: Ray start-up, the resource layout, the run directory, the
checks made before anything starts (the config against the environments and the model, the
learner's memory plan) and ``--dry-run``."""
