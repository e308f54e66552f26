"""Live tenants: pull them from the Descope Management API, and put one back.

The official SDK (``descope`` on PyPI, extra ``casbak[descope]``) is imported
only here and only when used. Responses are stored as they come (fields casbak
does not know are kept). A pull that fails for any tenant raises before any
snapshot is written. The management key never appears in casbak's messages:
errors name the call, the tenant id and the HTTP status.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol, TypeVar

import msgspec

from casbak.canonical import decode_canonical
from casbak.diff import Change, diff_values
from casbak.errors import DescopeError, UsageError
from casbak.ids import PLAIN, Hasher
from casbak.model import utc_now
from casbak.repository import Repository
from casbak.service import SnapshotResult, restore_documents, take_snapshot
from casbak.sources import TenantDocument, documents_from_values

T = TypeVar("T")
MAX_ATTEMPTS = 5
PARALLEL_CALLS = 8
MAX_RETRY_AFTER = 60.0


class TenantApi(Protocol):
    """The calls casbak makes; `SdkTenantApi` implements them with the official SDK."""

    def load_all(self) -> list[dict[str, Any]]: ...
    def load(self, tenant_id: str) -> dict[str, Any] | None: ...
    def load_settings(self, tenant_id: str) -> dict[str, Any]: ...
    def load_sso(self, tenant_id: str) -> Any: ...
    def create(self, tenant: dict[str, Any]) -> None: ...
    def update(self, tenant: dict[str, Any]) -> None: ...
    def update_settings(self, tenant_id: str, settings: dict[str, Any]) -> None: ...
    def configure_saml(self, tenant_id: str, saml: dict[str, Any]) -> None: ...


class SdkTenantApi:
    """`TenantApi` over the official Descope SDK, with retries that honour Retry-After."""

    def __init__(
        self,
        project_id: str | None = None,
        management_key: str | None = None,
        base_url: str | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        timeout_seconds: float = 30.0,
    ) -> None:
        project_id = project_id or os.environ.get("DESCOPE_PROJECT_ID")
        management_key = management_key or os.environ.get("DESCOPE_MANAGEMENT_KEY")
        base_url = base_url or os.environ.get("DESCOPE_BASE_URI")
        if not project_id or not management_key:
            raise UsageError("set DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY to reach Descope")
        try:
            from descope import DescopeClient
        except ImportError:
            raise UsageError(
                "the Descope SDK is not installed: pip install 'casbak[descope]'"
            ) from None
        self._secret = management_key
        self._sleep = sleep
        kwargs: dict[str, Any] = {"base_url": base_url.rstrip("/")} if base_url else {}
        self._client = self._call(
            "connect",
            None,
            lambda: DescopeClient(
                project_id=project_id,
                management_key=management_key,
                timeout_seconds=timeout_seconds,
                **kwargs,
            ),
        )
        self._tenant = self._client.mgmt.tenant
        self._sso = self._client.mgmt.sso

    def load_all(self) -> list[dict[str, Any]]:
        response = self._call("load all tenants", None, self._tenant.load_all)
        tenants = response.get("tenants") if isinstance(response, dict) else None
        if not isinstance(tenants, list) or not all(isinstance(t, dict) for t in tenants):
            raise DescopeError("load all tenants: malformed response (no 'tenants' list)")
        return tenants

    def load(self, tenant_id: str) -> dict[str, Any] | None:
        try:
            response = self._call("load tenant", tenant_id, lambda: self._tenant.load(tenant_id))
        except DescopeError as exc:
            if getattr(exc, "status", None) in (400, 404):
                return None
            raise
        tenant = response.get("tenant", response) if isinstance(response, dict) else None
        if not isinstance(tenant, dict) or tenant.get("id") != tenant_id:
            raise DescopeError(f"load tenant {tenant_id!r}: malformed response")
        return tenant

    def load_settings(self, tenant_id: str) -> dict[str, Any]:
        response = self._call(
            "load settings", tenant_id, lambda: self._tenant.load_settings(tenant_id)
        )
        if not isinstance(response, dict):
            raise DescopeError(f"load settings of {tenant_id!r}: malformed response")
        return response

    def load_sso(self, tenant_id: str) -> Any:
        response = self._call(
            "load SSO settings", tenant_id, lambda: self._sso.load_all_settings(tenant_id)
        )
        if isinstance(response, dict) and isinstance(response.get("SSOSettings"), list):
            return response["SSOSettings"]
        return response

    def create(self, tenant: dict[str, Any]) -> None:
        self._call(
            "create tenant",
            tenant["id"],
            lambda: self._tenant.create(
                name=tenant.get("name", tenant["id"]), id=tenant["id"], **_writable(tenant)
            ),
        )

    def update(self, tenant: dict[str, Any]) -> None:
        self._call(
            "update tenant",
            tenant["id"],
            lambda: self._tenant.update(
                id=tenant["id"], name=tenant.get("name", tenant["id"]), **_writable(tenant)
            ),
        )

    def update_settings(self, tenant_id: str, settings: dict[str, Any]) -> None:
        self._call(
            "update settings",
            tenant_id,
            lambda: self._tenant.update_settings(tenant_id, **_settings_arguments(settings)),
        )

    def configure_saml(self, tenant_id: str, saml: dict[str, Any]) -> None:
        from descope.management.sso_settings import AttributeMapping, RoleMapping, SSOSAMLSettings

        mapping = saml.get("attributeMapping") or {}
        settings = SSOSAMLSettings(
            idp_url=saml.get("idpSSOUrl", ""),
            idp_entity_id=saml.get("idpEntityId", ""),
            idp_cert=saml.get("idpCertificate", ""),
            attribute_mapping=AttributeMapping(
                name=mapping.get("name"),
                email=mapping.get("email"),
                phone_number=mapping.get("phoneNumber"),
                group=mapping.get("group"),
                given_name=mapping.get("givenName"),
                middle_name=mapping.get("middleName"),
                family_name=mapping.get("familyName"),
                picture=mapping.get("picture"),
                custom_attributes=mapping.get("customAttributes"),
            ),
            role_mappings=[
                RoleMapping(
                    groups=list(item.get("groups") or []),
                    role_name=(item.get("role") or {}).get("name", ""),
                )
                for item in saml.get("groupsMapping") or []
            ],
            default_sso_roles=list(saml.get("defaultSSORoles") or []),
            idp_additional_certs=list(saml.get("idpAdditionalCertificates") or []),
            groups_priority=list(saml.get("groupsPriority") or []),
            sp_acs_url=saml.get("spACSUrl") or None,
            sp_entity_id=saml.get("spEntityId") or None,
        )
        self._call(
            "configure SAML",
            tenant_id,
            lambda: self._sso.configure_saml_settings(
                tenant_id,
                settings,
                redirect_url=saml.get("redirectUrl"),
                domains=saml.get("domains"),
            ),
        )

    def _call(self, what: str, tenant_id: str | None, call: Callable[[], T]) -> T:
        from descope.exceptions import AuthException, RateLimitException

        where = f"{what} {tenant_id!r}" if tenant_id else what
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return call()
            except RateLimitException as exc:
                wait = float(exc.rate_limit_parameters.get("Retry-After") or 2**attempt)
                if attempt == MAX_ATTEMPTS or wait > MAX_RETRY_AFTER:
                    raise self._error(where, 429, "rate limited, retries exhausted") from None
                self._sleep(wait)
            except AuthException as exc:
                status = exc.status_code if isinstance(exc.status_code, int) else 0
                if status >= 500 and attempt < MAX_ATTEMPTS:
                    self._sleep(min(0.1 * 2**attempt, 5.0))
                    continue
                raise self._error(where, status, _describe(status)) from None
            except ValueError:
                raise self._error(where, 0, "malformed response (not JSON)") from None
            except Exception as exc:  # the SDK's transport errors (timeouts, resets)
                if attempt < MAX_ATTEMPTS:
                    self._sleep(min(0.1 * 2**attempt, 5.0))
                    continue
                reason = type(exc).__name__
                raise self._error(where, 0, f"no answer ({reason})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, where: str, status: int, reason: str) -> DescopeError:
        message = f"Descope API: {where} failed: {reason}" + (f" (HTTP {status})" if status else "")
        error = DescopeError(message.replace(self._secret, "***"))
        error.status = status  # type: ignore[attr-defined]
        return error


def _describe(status: int) -> str:
    return {
        400: "bad request or no such tenant",
        401: "unauthorized: check DESCOPE_MANAGEMENT_KEY",
        403: "forbidden: the management key lacks permission",
        404: "not found",
    }.get(status, "server error" if status >= 500 else "request failed")


def _writable(tenant: dict[str, Any]) -> dict[str, Any]:
    """The SDK arguments of create/update that a backed-up tenant can set again."""
    return {
        "self_provisioning_domains": tenant.get("selfProvisioningDomains") or [],
        "custom_attributes": tenant.get("customAttributes") or None,
        "enforce_sso": bool(tenant.get("enforceSSO", False)),
        "enforce_sso_exclusions": tenant.get("enforceSSOExclusions"),
        "federated_app_ids": tenant.get("federatedAppIds"),
        "disabled": bool(tenant.get("disabled", False)),
    }


_SETTINGS_ARGUMENTS = {
    "domains": "domains",
    "authType": "auth_type",
    "enabled": "session_settings_enabled",
    "refreshTokenExpiration": "refresh_token_expiration",
    "refreshTokenExpirationUnit": "refresh_token_expiration_unit",
    "sessionTokenExpiration": "session_token_expiration",
    "sessionTokenExpirationUnit": "session_token_expiration_unit",
    "stepupTokenExpiration": "stepup_token_expiration",
    "stepupTokenExpirationUnit": "stepup_token_expiration_unit",
    "enableInactivity": "enable_inactivity",
    "inactivityTime": "inactivity_time",
    "inactivityTimeUnit": "inactivity_time_unit",
    "JITDisabled": "JITDisabled",
}


def _settings_arguments(settings: dict[str, Any]) -> dict[str, Any]:
    arguments = {"self_provisioning_domains": settings.get("selfProvisioningDomains") or []}
    arguments.update(
        (name, settings[key]) for key, name in _SETTINGS_ARGUMENTS.items() if key in settings
    )
    return arguments


def pull_tenants(
    api: TenantApi,
    tenant_ids: Sequence[str] = (),
    *,
    with_settings: bool = False,
    with_sso: bool = False,
) -> list[dict[str, Any]]:
    """Every requested tenant (all when none named) as stored documents.

    With settings or SSO, each tenant becomes one composite document
    ``{"tenant": ..., "settings": ..., "sso": ...}``.
    """
    if tenant_ids:
        tenants = []
        for tenant_id in dict.fromkeys(tenant_ids):
            tenant = api.load(tenant_id)
            if tenant is None:
                raise DescopeError(f"Descope API: tenant {tenant_id!r} does not exist")
            tenants.append(tenant)
    else:
        tenants = api.load_all()
    if not (with_settings or with_sso):
        return tenants

    def complete(tenant: dict[str, Any]) -> dict[str, Any]:
        document: dict[str, Any] = {"tenant": tenant}
        if with_settings:
            document["settings"] = api.load_settings(tenant["id"])
        if with_sso:
            document["sso"] = api.load_sso(tenant["id"])
        return document

    # One call per tenant and kind: a few in flight at once hide the round trips,
    # well inside the API's rate limits. The first failure cancels the rest.
    with ThreadPoolExecutor(max_workers=PARALLEL_CALLS) as pool:
        futures = [pool.submit(complete, tenant) for tenant in tenants]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def live_document(api: TenantApi, tenant_id: str, like: dict[str, Any]) -> dict[str, Any] | None:
    """The live tenant in the same shape as the backed-up document ``like``."""
    tenant = api.load(tenant_id)
    if tenant is None:
        return None
    if "tenant" not in like:
        return tenant
    document: dict[str, Any] = {"tenant": tenant}
    if "settings" in like:
        document["settings"] = api.load_settings(tenant_id)
    if "sso" in like:
        document["sso"] = api.load_sso(tenant_id)
    return document


def push_tenant(api: TenantApi, document: dict[str, Any], *, exists: bool) -> list[str]:
    """Make the live tenant match a backed-up document; return what was written."""
    tenant = document.get("tenant", document)
    done = []
    if exists:
        api.update(tenant)
        done.append("tenant updated")
    else:
        api.create(tenant)
        done.append("tenant re-created")
    if isinstance(document.get("settings"), dict):
        api.update_settings(tenant["id"], document["settings"])
        done.append("settings updated")
    for entry in _sso_entries(document.get("sso")):
        saml = entry.get("saml")
        if entry.get("ssoId"):
            done.append(
                f"SSO configuration {entry['ssoId']!r} not written back (only a tenant's "
                "default configuration can be set through the SDK)"
            )
        elif isinstance(saml, dict) and saml.get("idpSSOUrl"):
            api.configure_saml(tenant["id"], saml)
            done.append("SAML configuration updated")
        elif isinstance(entry.get("oidc"), dict) and entry["oidc"].get("clientId"):
            done.append(
                "OIDC configuration not written back (its client secret is never in a "
                "backup); set it again in the console"
            )
    return done


def _sso_entries(sso: Any) -> list[dict[str, Any]]:
    if isinstance(sso, dict):
        sso = sso.get("SSOSettings", [sso])
    return [entry for entry in sso if isinstance(entry, dict)] if isinstance(sso, list) else []


class LiveRestore(msgspec.Struct, frozen=True):
    """What `restore --to-descope` found and did."""

    snapshot: str
    tenant_id: str
    exists: bool
    changes: list[Change]
    applied: bool
    actions: list[str]
    undo_snapshot: str | None = None


def pull_snapshot(
    repo: Repository,
    api: TenantApi,
    tenant_ids: Sequence[str] = (),
    *,
    with_settings: bool = False,
    with_sso: bool = False,
    **snapshot_options: Any,
) -> SnapshotResult:
    """Pull tenants from Descope and store them as one snapshot (nothing stored on failure)."""
    documents = pull_documents(
        api, tenant_ids, with_settings=with_settings, with_sso=with_sso, hasher=repo.hasher
    )
    return take_snapshot(repo, documents, **snapshot_options)


def pull_documents(
    api: TenantApi,
    tenant_ids: Sequence[str] = (),
    *,
    with_settings: bool = False,
    with_sso: bool = False,
    hasher: Hasher = PLAIN,
) -> list[TenantDocument]:
    """Pull tenants from Descope as checked documents, ready to store or to preview.

    ``hasher`` is the id function of the repository they are for.
    """
    documents = pull_tenants(api, tenant_ids, with_settings=with_settings, with_sso=with_sso)
    if not documents:
        raise DescopeError("Descope API: the project has no tenants to back up")
    return documents_from_values(documents, "descope", hasher)


def restore_to_descope(
    repo: Repository,
    api: TenantApi,
    reference: str,
    tenant_id: str,
    *,
    dry_run: bool = False,
    confirm: Callable[[list[Change]], bool] = lambda _changes: True,
    clock: Callable[[], datetime] = utc_now,
) -> LiveRestore:
    """Show how the live tenant differs from the backup and, once confirmed, put the backup back.

    Before anything changes, the live state is itself snapshotted (operation
    ``restore``), so the restore can be undone.
    """
    snapshot, documents = restore_documents(repo, reference, [tenant_id])
    backup = decode_canonical(documents[tenant_id])
    live = live_document(api, tenant_id, backup)
    changes = diff_values(live, backup) if live is not None else diff_values({}, backup)
    unchanged = live is not None and not changes

    def report(applied: bool, actions: list[str], undo: str | None = None) -> LiveRestore:
        return LiveRestore(
            snapshot.id, tenant_id, live is not None, changes, applied, actions, undo
        )

    if dry_run or unchanged:
        return report(False, ["nothing to do"] if unchanged else [])
    if not confirm(changes):
        raise UsageError("restore cancelled; nothing was changed")
    undo = None
    if live is not None:
        undo = take_snapshot(
            repo,
            documents_from_values([live], "descope", repo.hasher),
            operation="restore",
            target_id=tenant_id,
            description=f"live state before restoring snapshot {snapshot.id[:12]}",
            clock=clock,
        ).snapshot.id
    actions = push_tenant(api, backup, exists=live is not None)
    return report(True, actions, undo)
