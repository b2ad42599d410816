"""Training-data synthesis: Short-to-Long padding, key-chunk scoring, consistency voting."""
