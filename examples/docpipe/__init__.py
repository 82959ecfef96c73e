"""A document pipeline: fetch, parallel analysis branches, a map step, review, merge."""
