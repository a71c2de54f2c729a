"""The Tanqory reference system: service definitions and small real services."""
