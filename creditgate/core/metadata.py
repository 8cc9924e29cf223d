"""What `OPTIONS` answers under /api/: a bare 200 with `Allow`, for every caller.

DRF's default (SimpleMetadata) answers OPTIONS with the view's name, its docstring and the media
types it renders and parses: framework metadata that anyone may read on the endpoints open to
anonymous callers. The contract is the OpenAPI schema (/api/schema/), not this. OPTIONS still
goes through the endpoint's authentication and permissions first, like any other method: where a
login is needed, an anonymous OPTIONS is the same 401 a GET would be.
"""

from __future__ import annotations

from rest_framework.metadata import BaseMetadata


class NoMetadata(BaseMetadata):
    def determine_metadata(self, request, view):
        return None  # DRF then sends no body and no Content-Type; `Allow` lists the methods
