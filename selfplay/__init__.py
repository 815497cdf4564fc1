"""selfplay: multi-agent self-play reinforcement learning for language models.

Kept light: importing ``selfplay`` pulls in neither torch, vLLM nor Ray.
"""

__version__ = "0.1.0"
