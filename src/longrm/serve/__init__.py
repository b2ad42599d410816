"""The HTTP reward service: `longrm serve` puts any reward model behind scoring endpoints."""
