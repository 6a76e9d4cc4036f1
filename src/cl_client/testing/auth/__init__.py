"""A local auth service (FastAPI on hypercorn) with the real service's routes; needs the 'local'
extra."""

from .._extra import require_local_extra

require_local_extra("cl_client.testing.LocalAuthService")

from ._app import RecordedRequest, StoredUser  # noqa: E402
from ._service import LocalAuthService  # noqa: E402

__all__ = ["LocalAuthService", "RecordedRequest", "StoredUser"]
