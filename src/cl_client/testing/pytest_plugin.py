"""pytest plugin: fixtures for a running local compute service."""
