"""The API's one pagination: DRF's page numbers, declared in the schema as they behave.

A list view names its paginator in `pagination_class` (drf-spectacular reads it there to declare
the paginated shape and the query parameters) and pages with `self.paginate(...)`'s answer.
"""

from __future__ import annotations

from rest_framework import pagination, serializers


class PageNumberPagination(pagination.PageNumberPagination):
    """{"count", "next", "previous", "results"}; `?page=N` (a page past the last: 404).

    Unlike DRF's, a `page` that is not a whole number from 1 (`abc`, `0`, `-1`, `1e9`, empty, DRF's
    `last`) and a `page_size` that is not a whole number in 1..max_page_size are refused (400)
    rather than answered as a missing page or silently replaced: what a client asks for is what it
    gets, or it is told."""

    page_size = 20
    max_page_size: int | None = None
    last_page_strings = ()  # not in the schema: "last" is no page number

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise serializers.ValidationError({self.page_query_param: ["A whole number from 1 is required."]})
        return int(raw)

    def get_page_size(self, request):
        if not self.page_size_query_param or self.page_size_query_param not in request.query_params:
            return self.page_size
        raw = request.query_params[self.page_size_query_param]
        size = int(raw) if raw.isascii() and raw.isdigit() else 0
        if not 1 <= size <= (self.max_page_size or size):
            raise serializers.ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size} is required."]})
        return size

    def get_paginated_response_schema(self, schema):
        declared = super().get_paginated_response_schema(schema)
        declared["required"] = ["count", "next", "previous", "results"]  # always all four
        declared["properties"]["count"]["minimum"] = 0
        return declared

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = "A page number, from 1 (default). A page past the last one: 404."
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"].update({"minimum": 1, "maximum": self.max_page_size})
                parameter["description"] = f"Results per page, 1 to {self.max_page_size} (default {self.page_size})."
        return parameters


class LargePagesPagination(PageNumberPagination):
    """The client may choose the page size, up to 100."""

    page_size_query_param = "page_size"
    max_page_size = 100
