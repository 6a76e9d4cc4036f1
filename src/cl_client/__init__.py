"""cl-client: async client for the CL Server compute service."""
