"""The orchestrator: folds workflow inputs through the core and writes the outcome exactly once."""
