"""Statistics of a run: episode figures, step figures, the progress line, TensorBoard files."""
