"""Running on a Ray cluster: runtime environment and job submission helpers."""
