"""Data side of boundary migration: change capture, replication, reconciliation, read models."""
