"""openapi-core adapters for httpx2 requests and responses, and the billing API's document
loaded once with the ``EventMetadata`` patch (``oneOf`` -> ``anyOf``, so that integer values,
which the API accepts, validate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "dodo-openapi.yml"
SPEC_SERVER = "https://test.dodopayments.com"


def load_spec() -> OpenAPI:
    """The contract as an openapi-core validator, with integer metadata allowed."""
    document: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    metadata = document["components"]["schemas"]["EventMetadata"]["additionalProperties"]
    metadata["anyOf"] = metadata.pop("oneOf")
    return OpenAPI.from_dict(document)


class RequestAdapter:
    """An ``httpx2.Request`` seen as openapi-core's request, matched against the spec's
    server (so a request sent to the dev server finds its operation)."""

    def __init__(self, request: httpx2.Request) -> None:
        self._request = request
        query = parse_qsl(request.url.query.decode(), keep_blank_values=True)
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query),
            header=Headers(list(request.headers.multi_items())),
            cookie=ImmutableMultiDict(),
        )

    host_url = SPEC_SERVER

    @property
    def path(self) -> str:
        return self._request.url.path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        return self._request.content or None

    @property
    def content_type(self) -> str:
        return self._request.headers.get("content-type", "")


class ResponseAdapter:
    """An ``httpx2.Response`` seen as openapi-core's response."""

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str:
        return self._response.headers.get("content-type", "")

    @property
    def headers(self) -> Headers:
        return Headers(list(self._response.headers.multi_items()))

    @property
    def data(self) -> bytes | None:
        return self._response.content or None


def response_problems(spec: OpenAPI, response: httpx2.Response) -> list[str]:
    """Why ``response`` (to its request) breaks the contract; empty when it conforms."""
    try:
        spec.validate_response(RequestAdapter(response.request), ResponseAdapter(response))
    except Exception as error:
        problems = [str(error)]
        cause = error.__cause__
        for schema_error in getattr(cause, "schema_errors", None) or ():
            problems.append(f"{list(schema_error.absolute_path)}: {schema_error.message}")
        return problems
    return []


def request_problems(spec: OpenAPI, request: httpx2.Request) -> list[str]:
    """Why ``request`` breaks the contract; empty when it conforms."""
    try:
        spec.validate_request(RequestAdapter(request))
    except Exception as error:
        return [str(error)]
    return []
