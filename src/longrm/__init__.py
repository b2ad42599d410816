"""longrm: long-context reward models: benchmark, evaluate, synthesize, train and serve."""

__version__ = "0.1.0"
