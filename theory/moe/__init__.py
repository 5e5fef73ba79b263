"""Paper 2: one attention row as a mixture of experts, its least-squares estimation and the Voronoi losses."""
