"""Provider contracts: our JSON Schemas of the public API specs (one folder per provider), and a
check of requests and answers against them with the `jsonschema` library.

A schema names its endpoint with `x-method`, `x-path` (a route template, `{name}` for a path
segment) and `x-part` (`request`: the JSON body, or the query of a GET; `answer`: a 2xx body).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from simulators.server import Request, Response

HERE = Path(__file__).parent
Part = Literal["request", "answer"]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: re.Pattern[str]
    part: Part
    validator: Draft202012Validator


@cache
def endpoints(provider: str) -> tuple[Endpoint, ...]:
    """Every schema of `provider`, checked against the metaschema."""
    schemas = [json.loads(p.read_text()) for p in sorted((HERE / provider).glob("*.json"))]
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas
    )
    found = []
    for schema in schemas:
        Draft202012Validator.check_schema(schema)
        if "x-path" not in schema:
            continue  # shared definitions
        template = re.escape(schema["x-path"])
        path = re.compile(re.sub(r"\\{\w+\\}", "[^/]+", template))
        validator = Draft202012Validator(schema, registry=registry)
        found.append(Endpoint(schema["x-method"], path, schema["x-part"], validator))
    return tuple(found)


def violations(provider: str, method: str, path: str, part: Part, body: Any) -> list[str]:
    """What is wrong with `body` for this endpoint; an endpoint without a schema is an error."""
    matching = [
        e
        for e in endpoints(provider)
        if e.method == method and e.path.fullmatch(path) and e.part == part
    ]
    if not matching:
        return [f"{method} {path}: no {part} schema in tests/contracts/{provider}"]
    return [
        f"{method} {path} {part} at /{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for endpoint in matching
        for error in endpoint.validator.iter_errors(body)
    ]


def exchange_violations(provider: str, request: Request, response: Response) -> list[str]:
    """A simulator's view of one call: its request (JSON body, or a GET's query) and, when the
    status is 2xx and there is a body, its answer."""
    method, path = request.method, request.path
    sent = {k: v[0] for k, v in request.query.items()} if method == "GET" else request.json()
    found = violations(provider, method, path, "request", sent)
    if 200 <= response.status < 300 and response.body is not None:
        found += violations(provider, method, path, "answer", response.body)
    return found
