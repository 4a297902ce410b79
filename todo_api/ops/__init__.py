"""Operator tooling: the CLI, periodic jobs, the admin UI, the embedded PostgreSQL."""
