"""Deployment monitoring: density of a model's embeddings of a reference set, calibrated
out-of-domain flags, and error detection for black-box models from embedding neighbourhoods."""
