"""The commands: the CLI and what it runs besides training (evaluation, play, benchmarks)."""
