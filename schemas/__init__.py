"""kflow's Avro contracts as package data: ``avro/`` (current) and ``history/<version>/``.

Read them with ``importlib.resources.files("kflow.schemas")``; see ``README.md``.
"""
