"""Accounts, device sessions and tokens."""
