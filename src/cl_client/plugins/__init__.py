"""Typed clients for the nine compute plugins."""
