"""Runnable kflow examples."""
