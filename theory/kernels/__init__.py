"""Paper 1's kernels: the stylized prefix models, their empirical NTK, its infinite-prefix limit and the linearised dynamics."""
