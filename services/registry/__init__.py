"""The definitions registry: workflow definitions on the compacted definitions topic."""
