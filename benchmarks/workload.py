"""The standard workload: frequent backups of Descope-shaped tenants.

Deterministic for a seed. Each round is a folder of one ``<tenant>.json`` per
tenant, as an export script would write it. Between rounds about 2% of tenants
get small realistic edits (rename, domains, custom attributes, SSO toggles,
certificate rotation, role mappings, session timeouts), a few are created or
deleted, and edited documents come back with formatting noise (another key
order, pretty or compact), as real exports do. Shapes and sizes follow
``examples/descope/``.

    python -m benchmarks.workload OUT --tenants 2000 --rounds 30
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import shutil
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BASE62 = string.ascii_letters + string.digits
ATTRIBUTE_NAMES = [f"attr{i:02d}" for i in range(20)] + [
    "plan",
    "region",
    "seats",
    "seatsUsed",
    "billingId",
    "salesforceAccountId",
    "crmOwner",
    "dataResidency",
    "hipaa",
    "soc2",
    "mfaRequired",
    "contractRenewal",
    "supportTier",
    "featureFlags",
    "allowedIpRanges",
    "costCenter",
    "industry",
    "employeeCount",
    "accountManager",
    "onboardingStatus",
    "sandbox",
    "maxApiKeys",
    "logoUrl",
    "tier",
    "segment",
    "country",
    "timezone",
    "locale",
    "partner",
    "reseller",
    "sla",
    "owner",
    "riskScore",
    "renewalQuarter",
    "notes",
    "tags",
    "legacyId",
    "migrationBatch",
]
WORDS = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "wayne",
    "stark",
    "hooli",
    "vandelay",
    "bluebird",
    "northwind",
    "contoso",
    "fabrikam",
    "tailspin",
    "wingtip",
    "litware",
    "adventure",
    "proseware",
    "lucerne",
    "margie",
    "fourth",
    "coffee",
    "dental",
    "health",
    "labs",
    "retail",
    "finance",
    "systems",
    "group",
    "cloud",
    "logistics",
]
TLDS = ["com", "io", "dev", "co.uk", "de", "fr", "ch", "net", "org", "eu"]


def _certificate(rng: random.Random) -> str:
    body = base64.b64encode(rng.randbytes(rng.randint(800, 1600))).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _domain(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)}{rng.choice(['', '-', ''])}{rng.choice(WORDS)}.{rng.choice(TLDS)}"


def _attribute_value(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.6:
        return rng.choice(WORDS) + "-" + "".join(rng.choices(BASE62, k=rng.randint(2, 12)))
    if kind < 0.75:
        return rng.randint(0, 100000)
    if kind < 0.9:
        return rng.random() < 0.5
    return [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]


def _tenant_id(rng: random.Random, taken: set[str]) -> str:
    while True:
        if rng.random() < 0.7:
            candidate = "T2" + "".join(rng.choices(BASE62, k=rng.randint(25, 27)))
        else:
            candidate = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{rng.randint(1, 999)}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _saml(rng: random.Random, tenant_id: str) -> dict[str, Any]:
    return {
        "ssoId": "",
        "saml": {
            "idpEntityId": f"http://www.okta.com/exk{''.join(rng.choices(BASE62, k=17))}",
            "idpSSOUrl": f"https://{rng.choice(WORDS)}.okta.com/app/{tenant_id}/sso/saml",
            "idpCertificate": _certificate(rng),
            "idpAdditionalCertificates": [_certificate(rng) for _ in range(rng.randint(0, 1))],
            "idpMetadataUrl": "",
            "spEntityId": f"https://api.descope.com/v1/auth/saml/acs/P2xyz/{tenant_id}",
            "spACSUrl": "https://api.descope.com/v1/auth/saml/acs",
            "spCertificate": _certificate(rng),
            "attributeMapping": {
                "name": "displayName",
                "email": "email",
                "group": "groups",
                "givenName": "firstName",
                "familyName": "lastName",
            },
            "groupsMapping": [
                {
                    "role": {
                        "id": "RL2" + "".join(rng.choices(BASE62, k=24)),
                        "name": rng.choice(["Tenant Admin", "Tenant Member", "Billing"]),
                    },
                    "groups": [rng.choice(WORDS) + "-group" for _ in range(rng.randint(1, 3))],
                }
                for _ in range(rng.randint(0, 5))
            ],
            "defaultSSORoles": ["Tenant Member"],
            "groupsPriority": [],
            "redirectUrl": "",
            "subjectNameIdFormat": "",
            "lastSuccessTestTime": 1730000000 + rng.randint(0, 10**7),
        },
    }


def _settings(rng: random.Random, tenant: dict[str, Any]) -> dict[str, Any]:
    return {
        "domains": list(tenant.get("domains", [])),
        "selfProvisioningDomains": list(tenant["selfProvisioningDomains"]),
        "authType": tenant["authType"],
        "enabled": True,
        "refreshTokenExpiration": rng.choice([7, 14, 30]),
        "refreshTokenExpirationUnit": "days",
        "sessionTokenExpiration": rng.choice([5, 10, 15, 60]),
        "sessionTokenExpirationUnit": "minutes",
        "enableInactivity": rng.random() < 0.3,
        "inactivityTime": 60,
        "inactivityTimeUnit": "minutes",
        "JITDisabled": False,
    }


def new_tenant(rng: random.Random, taken: set[str]) -> dict[str, Any]:
    """One tenant document: plain (70%), or composite with settings and SSO."""
    tenant_id = _tenant_id(rng, taken)
    roll = rng.random()
    domains_count = rng.choices([0, 1, 3, 12], weights=[55, 25, 15, 5])[0]
    attributes_count = rng.choices(
        [0, rng.randint(1, 5), rng.randint(6, 40)], weights=[50, 30, 20]
    )[0]
    auth = "none" if roll < 0.7 else ("saml" if roll < 0.92 else "oidc")
    tenant: dict[str, Any] = {
        "id": tenant_id,
        "name": " ".join(rng.choice(WORDS).title() for _ in range(rng.randint(1, 4)))
        + (" Zürich" if rng.random() < 0.05 else ""),
        "selfProvisioningDomains": [_domain(rng) for _ in range(domains_count)],
        "customAttributes": {
            name: _attribute_value(rng) for name in rng.sample(ATTRIBUTE_NAMES, attributes_count)
        },
        "authType": auth,
        "createdTime": 1640995200 + rng.randint(0, 10**8),
    }
    if auth != "none":
        tenant["domains"] = tenant["selfProvisioningDomains"][:2]
        tenant["enforceSSO"] = rng.random() < 0.4
    if rng.random() < 0.03:
        tenant["disabled"] = True
    if auth == "none":
        return tenant
    sso = (
        [_saml(rng, tenant_id)]
        if auth == "saml"
        else [
            {
                "ssoId": "",
                "oidc": {
                    "name": "corp-oidc",
                    "clientId": "".join(rng.choices(BASE62, k=20)),
                    "clientSecret": "",
                    "authUrl": f"https://login.{_domain(rng)}/authorize",
                    "scope": ["openid", "email"],
                    "grantType": "authorization_code",
                    "lastSuccessTestTime": 0,
                },
            }
        ]
    )
    return {"tenant": tenant, "settings": _settings(rng, tenant), "sso": sso}


def _core(document: dict[str, Any]) -> dict[str, Any]:
    inner = document.get("tenant")
    return inner if isinstance(inner, dict) else document


def tenant_id(document: dict[str, Any]) -> str:
    """The id of a generated document."""
    return str(_core(document)["id"])


def edit(rng: random.Random, document: dict[str, Any]) -> None:
    """Apply one small realistic edit in place."""
    tenant = _core(document)
    kind = rng.choices(
        [
            "rename",
            "domain",
            "attr-value",
            "attr-key",
            "sso",
            "disabled",
            "cert",
            "role",
            "session",
        ],
        weights=[15, 20, 25, 10, 8, 3, 5, 5, 4],
    )[0]
    if kind == "rename":
        tenant["name"] = tenant["name"].split(" (")[0] + f" ({rng.choice(WORDS).title()})"
    elif kind == "domain":
        domains = tenant["selfProvisioningDomains"]
        if domains and rng.random() < 0.4:
            domains.pop(rng.randrange(len(domains)))
        else:
            domains.append(_domain(rng))
    elif kind in ("attr-value", "attr-key"):
        attributes = tenant["customAttributes"]
        if attributes and kind == "attr-value":
            attributes[rng.choice(sorted(attributes))] = _attribute_value(rng)
        elif attributes and rng.random() < 0.4:
            del attributes[rng.choice(sorted(attributes))]
        else:
            attributes[rng.choice(ATTRIBUTE_NAMES)] = _attribute_value(rng)
    elif kind == "sso":
        tenant["enforceSSO"] = not tenant.get("enforceSSO", False)
    elif kind == "disabled":
        tenant["disabled"] = not tenant.get("disabled", False)
    elif kind in ("cert", "role") and "sso" in document and "saml" in document["sso"][0]:
        saml = document["sso"][0]["saml"]
        if kind == "cert":
            saml["idpAdditionalCertificates"] = [_certificate(rng)]
        else:
            saml["defaultSSORoles"] = [rng.choice(["Tenant Member", "Viewer", "Billing"])]
    elif "settings" in document:
        document["settings"]["sessionTokenExpiration"] = rng.choice([5, 10, 15, 30, 60])
    else:
        tenant["customAttributes"]["touched"] = rng.randint(0, 10**6)


def _shuffled(rng: random.Random, value: Any) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: _shuffled(rng, value[key]) for key in keys}
    if isinstance(value, list):
        return [_shuffled(rng, item) for item in value]
    return value


def render(rng: random.Random, document: dict[str, Any], noisy: bool) -> str:
    """The file text: pretty in export order, or with formatting noise for edited ones."""
    if not noisy:
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    shuffled = _shuffled(rng, document)
    if rng.random() < 0.5:
        return json.dumps(shuffled, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(shuffled, indent=rng.choice([2, 4]), ensure_ascii=rng.random() < 0.5)


class Workload:
    """Rounds of tenant exports; `advance` moves to the next round."""

    def __init__(self, tenants: int = 2000, seed: int = 7, edit_share: float = 0.02) -> None:
        self.rng = random.Random(seed)
        self.taken: set[str] = set()
        self.edit_share = edit_share
        self.documents = {
            tenant_id(d): d for d in (new_tenant(self.rng, self.taken) for _ in range(tenants))
        }
        self.noisy: set[str] = set()

    def advance(self) -> None:
        """Edit about edit_share of the tenants, create and delete a few."""
        ids = sorted(self.documents)
        edited = self.rng.sample(ids, max(1, int(len(ids) * self.edit_share)))
        for chosen in edited:
            edit(self.rng, self.documents[chosen])
        gone = self.rng.sample(ids, self.rng.randint(0, 2))
        for chosen in gone:
            del self.documents[chosen]
        created = [new_tenant(self.rng, self.taken) for _ in range(self.rng.randint(0, 3))]
        self.documents.update((tenant_id(d), d) for d in created)
        self.noisy = (set(edited) - set(gone)) | {tenant_id(d) for d in created}

    def rounds(self, folder: Path, count: int) -> Iterator[int]:
        """Write round after round into the same export folder; yield each round's number."""
        for number in range(1, count + 1):
            if number > 1:
                self.advance()
            shutil.rmtree(folder, ignore_errors=True)
            self.write(folder)
            yield number

    def write(self, folder: Path) -> int:
        """Write the current round as one file per tenant; return the bytes written."""
        folder.mkdir(parents=True, exist_ok=True)
        total = 0
        for key, document in sorted(self.documents.items()):
            text = render(self.rng, document, key in self.noisy).encode()
            (folder / file_name(key)).write_bytes(text)
            total += len(text)
        return total

    def files_changed(self, before: set[str]) -> dict[str, bytes | None]:
        """The files `write` would change since the round whose noisy tenants were ``before``.

        Only tenants noisy now or then are rendered (a tenant edited last round
        is written plainly again now), in `write`'s order, so the random stream
        is consumed exactly as `write` consumes it; None marks a file removed.
        """
        changed: dict[str, bytes | None] = {}
        for key in sorted(self.noisy | before):
            if key in self.documents:
                text = render(self.rng, self.documents[key], key in self.noisy).encode()
                changed[file_name(key)] = text
        return changed


def file_name(key: str) -> str:
    """A tenant's file in the export: its id, or a hash of an id no file system would take."""
    name = key if key.replace("-", "").isalnum() else hashlib.sha256(key.encode()).hexdigest()
    return f"{name}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    workload = Workload(args.tenants, args.seed)
    for number in range(1, args.rounds + 1):
        if number > 1:
            workload.advance()
        size = workload.write(args.out / f"round-{number:03d}")
        print(f"round {number}: {len(workload.documents)} tenants, {size} bytes")


if __name__ == "__main__":
    main()
