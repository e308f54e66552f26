"""A local fake of the Descope Management API, for the real SDK to talk to.

Serves the documented endpoints and response shapes on 127.0.0.1, checks the
bearer token, and can be told to answer 401, 429 with Retry-After, 500, or to
be slow, for chosen paths.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.loopback import http_server

PROJECT_ID = "P2fakeProjectIdForCasbakTests00"
MANAGEMENT_KEY = "K2-secret-management-key-never-printed"


@dataclass
class Fault:
    status: int
    times: int = 1
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class FakeDescope:
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    sso: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # project roles: name -> id
    requests: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def fail(
        self,
        path: str,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.faults.setdefault(path, []).append(Fault(status, times, retry_after, delay))

    def add(self, document: dict[str, Any]) -> None:
        tenant = document.get("tenant", document)
        self.tenants[tenant["id"]] = copy.deepcopy(tenant)
        if "settings" in document:
            self.settings[tenant["id"]] = copy.deepcopy(document["settings"])
        if "sso" in document:
            self.sso[tenant["id"]] = copy.deepcopy(document["sso"])
            for entry in document["sso"]:
                for mapping in (entry.get("saml") or {}).get("groupsMapping", []):
                    self.roles[mapping["role"]["name"]] = mapping["role"]["id"]


def _stored_saml(
    body: dict[str, Any], previous: list[dict[str, Any]], role_ids: dict[str, str]
) -> dict[str, Any]:
    """What the read endpoint returns after a SAML configure call (request shape -> read shape).

    An inference from the SDK's request and response shapes; the real server's mapping is
    not documented.
    """
    old = previous[0] if previous else {"ssoId": ""}
    old_saml = old.get("saml") or {}
    given = body["settings"]
    mapping = {k: v for k, v in (given.get("attributeMapping") or {}).items() if v is not None}
    saml = {
        **old_saml,
        "idpSSOUrl": given["idpUrl"],
        "idpEntityId": given["entityId"],
        "idpCertificate": given["idpCert"],
        "idpAdditionalCertificates": given.get("idpAdditionalCerts") or [],
        "attributeMapping": {**old_saml.get("attributeMapping", {}), **mapping},
        "groupsMapping": [
            {
                "role": {"id": role_ids.get(m["roleName"], "RL2unknown"), "name": m["roleName"]},
                "groups": m["groups"],
            }
            for m in given.get("roleMappings") or []
        ],
        "defaultSSORoles": given.get("defaultSSORoles") or [],
        "groupsPriority": given.get("groupsPriority") or [],
        "redirectUrl": body.get("redirectUrl") or "",
    }
    for read_key, write_key in (("spACSUrl", "spACSUrl"), ("spEntityId", "spEntityId")):
        if given.get(write_key):
            saml[read_key] = given[write_key]
    return {**old, "saml": saml}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeDescope

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self, status: int, code: str, description: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send(
            status,
            {"errorCode": code, "errorDescription": description, "errorMessage": description},
            headers,
        )

    def _route(self, method: str) -> None:
        parsed = urlparse(self.path)
        path, query = parsed.path, {k: v[0] for k, v in parse_qs(parsed.query).items()}
        fake = self.fake
        with fake.lock:
            fake.requests[f"{method} {path}"] += 1
            pending = fake.faults.get(path, [])
            fault = pending[0] if pending else None
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    pending.pop(0)
        if self.headers.get("Authorization") != f"Bearer {PROJECT_ID}:{MANAGEMENT_KEY}":
            self._error(401, "E062108", "Unauthorized: invalid management key")
            return
        if fault is not None:
            time.sleep(fault.delay)
            if fault.status == 299:
                data = b"<html>not json</html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if fault.status == 429:
                self._error(
                    429,
                    "E130429",
                    "API rate limit exceeded",
                    {"Retry-After": str(fault.retry_after or 1)},
                )
                return
            if fault.status >= 400:
                self._error(fault.status, "E010009", "Unknown server error")
                return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        self._dispatch(method, path, query, body)

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: Any) -> None:
        fake = self.fake
        if path == "/v1/mgmt/license":
            self._send(200, {"rateLimitTier": "free"})
        elif method == "GET" and path == "/v1/mgmt/tenant/all":
            self._send(200, {"tenants": list(fake.tenants.values())})
        elif method == "GET" and path == "/v1/mgmt/tenant":
            tenant = fake.tenants.get(query.get("id", ""))
            if tenant is None:
                self._error(400, "E011003", "Tenant not found")
            else:
                self._send(200, tenant)
        elif path == "/v1/mgmt/tenant/settings":
            tenant_id = query.get("id") if method == "GET" else body.get("tenantId")
            if tenant_id not in fake.tenants:
                self._error(400, "E011003", "Tenant not found")
            elif method == "GET":
                self._send(200, fake.settings.get(tenant_id, {}))
            else:
                fake.settings[tenant_id] = {
                    **fake.settings.get(tenant_id, {}),
                    **{k: v for k, v in body.items() if k != "tenantId"},
                }
                self._send(200, {})
        elif method == "POST" and path == "/v1/mgmt/sso/saml":
            tenant_id = body.get("tenantId")
            if tenant_id not in fake.tenants:
                self._error(400, "E011003", "Tenant not found")
                return
            fake.sso[tenant_id] = [_stored_saml(body, fake.sso.get(tenant_id, []), fake.roles)]
            self._send(200, {})
        elif method == "GET" and path == "/v2/mgmt/sso/settings/all":
            self._send(200, {"SSOSettings": fake.sso.get(query.get("tenantId", ""), [])})
        elif method == "POST" and path in ("/v1/mgmt/tenant/create", "/v1/mgmt/tenant/update"):
            tenant_id = body.get("id")
            exists = tenant_id in fake.tenants
            if path.endswith("update") and not exists:
                self._error(400, "E011003", "Tenant not found")
                return
            if path.endswith("create") and exists:
                self._error(409, "E011004", "Tenant already exists")
                return
            previous = fake.tenants.get(tenant_id, {})
            # Fields in the request override the stored ones (empty ones too); fields the
            # request cannot carry (authType, domains, createdTime, ...) stay as they were.
            updated = {**previous, **body}
            fake.tenants[tenant_id] = updated
            self._send(200, {"id": tenant_id} if path.endswith("create") else {})
        elif method == "POST" and path == "/v1/mgmt/tenant/delete":
            fake.tenants.pop(body.get("id"), None)
            fake.settings.pop(body.get("id"), None)
            self._send(200, {})
        else:
            self._error(404, "E000404", f"no such endpoint {method} {path}")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")


@contextmanager
def serve(fake: FakeDescope) -> Iterator[FakeDescope]:
    with http_server(type("Handler", (_Handler,), {"fake": fake})) as url:
        fake.url = url
        yield fake
