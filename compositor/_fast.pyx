# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fast yuv420p kernels (filled by the compositor work)."""
