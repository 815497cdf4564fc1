"""Overrides shared by the tests that train the ``debug`` config on the tiny model."""

#: The tiny model (random weights) forfeits every hand, so all its returns are equal. Under the
#: debug config's ``advantage.baseline_init: first_batch`` every advantage would then be 0 and
#: the weights would never move, while these tests check what happens to weights that do move
#: (publishing, checkpoints, exact resume, restarts). So they take baselines from 0 (SPIRAL's).
TINY_DEBUG = ["model=tiny", "advantage.baseline_init=zero"]
