"""Verification scenarios and the co-simulation regression that runs them."""
