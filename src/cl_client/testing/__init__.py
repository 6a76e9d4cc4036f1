"""Local CL Server services and pytest fixtures for testing without a real server."""
