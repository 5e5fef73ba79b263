"""NTK-Attention: feature maps, the prefix summary, its error bounds and the trained-summary form."""
