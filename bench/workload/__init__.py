"""The "web tier" benchmark workload: generated controller-side files and the mop policy."""
