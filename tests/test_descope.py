"""Live pulls and restores through the real Descope SDK against a local fake API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.workload import Workload
from casbak import BackupService
from casbak.backends.local import LocalBackend
from casbak.descope_live import SdkTenantApi
from casbak.errors import DescopeError
from casbak.repository import Repository
from casbak.service import restore_documents
from tests.conftest import DESCOPE as SAMPLES
from tests.conftest import FakeClock, tree_state
from tests.fake_descope import MANAGEMENT_KEY, PROJECT_ID, FakeDescope, serve
from tests.test_cli import run


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDescope]:
    state = FakeDescope()
    for tenant in json.loads((SAMPLES / "load_all_response.json").read_text())["tenants"]:
        state.add(tenant)
    composite = json.loads((SAMPLES / "large_tenant_composite.json").read_text())
    composite["tenant"]["id"] = "acme-full"
    state.add({**composite, "sso": composite["sso"]})
    with serve(state) as running:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT_ID)
        monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", MANAGEMENT_KEY)
        monkeypatch.setenv("DESCOPE_BASE_URI", running.url)
        yield running


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    run(tmp_path / "repo", "init")
    return tmp_path / "repo"


def opened(path: Path) -> Repository:
    return Repository.open(LocalBackend(path))


def no_secret(*texts: str) -> None:
    for text in texts:
        assert MANAGEMENT_KEY not in text


def test_pull_all_tenants(fake: FakeDescope, repo: Path) -> None:
    code, out, err = run(repo, "--json", "snapshot", "--from-descope", "--operation", "sync-apply")
    assert code == 0, err
    result = json.loads(out)
    assert result["snapshot"]["tenants"] == 3
    assert result["snapshot"]["target_id"] == "all-tenants"
    _, documents = restore_documents(opened(repo), "latest")
    assert {k: json.loads(v) for k, v in documents.items()} == fake.tenants
    assert fake.requests["GET /v1/mgmt/tenant/all"] == 1
    no_secret(out, err)


def pull_acme_full(repo: Path) -> dict[str, Any]:
    """Snapshot tenant acme-full with its settings and SSO; return the snapshot summary."""
    code, out, err = run(
        repo,
        "--json",
        "snapshot",
        "--from-descope",
        "--tenant",
        "acme-full",
        "--with-settings",
        "--with-sso",
        "-o",
        "tenant-update",
    )
    assert code == 0, err
    summary: dict[str, Any] = json.loads(out)["snapshot"]
    return summary


def test_pull_one_tenant_with_settings_and_sso(fake: FakeDescope, repo: Path) -> None:
    assert pull_acme_full(repo)["target_id"] == "acme-full"
    document = json.loads(restore_documents(opened(repo), "latest")[1]["acme-full"])
    assert document == {
        "tenant": fake.tenants["acme-full"],
        "settings": fake.settings["acme-full"],
        "sso": fake.sso["acme-full"],
    }


def test_full_pull_of_2000_tenants_keeps_unknown_fields(fake: FakeDescope, repo: Path) -> None:
    fake.tenants.clear()
    workload = Workload(2000)
    for document in workload.documents.values():
        tenant = document.get("tenant", document)
        fake.tenants[tenant["id"]] = {**tenant, "aFieldCasbakDoesNotKnow": {"x": [1, 2.5]}}
    code, out, _ = run(repo, "--json", "snapshot", "--from-descope")
    assert code == 0
    assert json.loads(out)["snapshot"]["tenants"] == 2000
    restored = restore_documents(opened(repo), "latest")[1]
    assert {k: json.loads(v) for k, v in restored.items()} == fake.tenants


def test_partial_failure_stores_nothing(fake: FakeDescope, repo: Path) -> None:
    before = tree_state(repo)
    fake.fail("/v1/mgmt/tenant/settings", 500, times=100)
    code, out, err = run(repo, "snapshot", "--from-descope", "--with-settings")
    assert code == 1
    assert (
        "Descope API: load settings 'T2qW8rZt1mXc4VbN7kLp0aSd3Fg' failed: server error (HTTP 500)"
        in err
    )
    assert err.count("\n") == 1
    assert tree_state(repo) == before
    no_secret(out, err)


@pytest.mark.parametrize(("status", "reason"), [(401, "unauthorized"), (403, "forbidden")])
def test_auth_failures(fake: FakeDescope, repo: Path, status: int, reason: str) -> None:
    fake.fail("/v1/mgmt/tenant/all", status, times=10)
    code, out, err = run(repo, "snapshot", "--from-descope")
    assert code == 1
    assert reason in err
    no_secret(out, err)


def test_wrong_management_key(
    fake: FakeDescope, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", "K2-wrong-key-also-secret")
    code, out, err = run(repo, "snapshot", "--from-descope")
    assert code == 1
    assert "unauthorized: check DESCOPE_MANAGEMENT_KEY (HTTP 401)" in err
    assert "K2-wrong-key-also-secret" not in out + err


def test_missing_configuration(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DESCOPE_MANAGEMENT_KEY", raising=False)
    monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT_ID)
    code, _, err = run(repo, "snapshot", "--from-descope")
    assert code == 2
    assert "DESCOPE_MANAGEMENT_KEY" in err
    assert run(repo, "snapshot", "--tenant", "x")[0] == 2
    assert run(repo, "snapshot", "--from-descope", "file.json")[0] == 2
    assert run(repo, "snapshot")[0] == 2


def test_rate_limit_is_retried_after_retry_after(fake: FakeDescope, repo: Path) -> None:
    fake.fail("/v1/mgmt/tenant/all", 429, times=2, retry_after=1)
    code, _, err = run(repo, "snapshot", "--from-descope")
    assert code == 0, err
    assert fake.requests["GET /v1/mgmt/tenant/all"] == 3


def test_rate_limit_exhausted_and_malformed_and_slow(fake: FakeDescope) -> None:
    waits: list[float] = []
    api = SdkTenantApi(sleep=waits.append, timeout_seconds=0.3)
    fake.fail("/v1/mgmt/tenant/all", 429, times=10, retry_after=2)
    with pytest.raises(DescopeError, match="rate limited, retries exhausted"):
        api.load_all()
    assert waits == [2.0, 2.0, 2.0, 2.0]
    fake.faults.clear()
    fake.fail("/v1/mgmt/tenant/all", 299)
    with pytest.raises(DescopeError, match="malformed response"):
        api.load_all()
    fake.fail("/v1/mgmt/tenant", 200, times=10, delay=0.6)
    with pytest.raises(DescopeError, match="no answer"):
        api.load("acme-corp-emea")
    fake.faults.clear()
    fake.fail("/v1/mgmt/tenant/settings", 500, times=2)
    assert api.load_settings("acme-full") == fake.settings["acme-full"]


def test_unknown_tenant(fake: FakeDescope, repo: Path) -> None:
    code, _, err = run(repo, "snapshot", "--from-descope", "--tenant", "nobody")
    assert code == 1
    assert "tenant 'nobody' does not exist" in err


def test_restore_round_trip(fake: FakeDescope, repo: Path) -> None:
    code, out, _ = run(
        repo, "--json", "snapshot", "--from-descope", "--tenant", "acme-full", "--with-settings"
    )
    original = json.loads(out)["snapshot"]["id"]
    backed_up = json.loads(json.dumps(fake.tenants["acme-full"]))
    settings_before = dict(fake.settings["acme-full"])
    fake.tenants["acme-full"]["name"] = "Renamed by mistake"
    fake.tenants["acme-full"]["selfProvisioningDomains"] = []
    fake.settings["acme-full"]["sessionTokenExpiration"] = 999

    code, out, _ = run(
        repo, "restore", "latest:acme-full", "--tenant", "acme-full", "--to-descope", "--dry-run"
    )
    assert code == 0
    assert '$.tenant.name: "Renamed by mistake" -> "Acme Corporation (EMEA)"' in out
    assert "$.settings.sessionTokenExpiration: 999 -> 10" in out
    assert fake.tenants["acme-full"]["name"] == "Renamed by mistake"

    code, _, err = run(repo, "restore", "latest:acme-full", "--tenant", "acme-full", "--to-descope")
    assert code == 2 and "--yes" in err

    code, out, err = run(
        repo,
        "--json",
        "restore",
        "latest:acme-full",
        "--tenant",
        "acme-full",
        "--to-descope",
        "--yes",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["applied"] is True
    assert result["actions"][:2] == ["tenant updated", "settings updated"]
    live = fake.tenants["acme-full"]
    for key in ("name", "selfProvisioningDomains", "customAttributes", "enforceSSO", "disabled"):
        assert live[key] == backed_up[key], key
    assert (
        fake.settings["acme-full"]["sessionTokenExpiration"]
        == settings_before["sessionTokenExpiration"]
    )
    undo = opened(repo).resolve(result["undo_snapshot"])
    assert undo.manifest.operation == "restore"
    saved = json.loads(restore_documents(opened(repo), undo.id)[1]["acme-full"])
    assert saved["tenant"]["name"] == "Renamed by mistake"
    # latest:acme-full is now the undo snapshot; the original is named by its id.
    assert opened(repo).resolve("latest:acme-full").id == result["undo_snapshot"]
    code, out, _ = run(
        repo, "--json", "restore", original[:10], "--tenant", "acme-full", "--to-descope", "--yes"
    )
    again = json.loads(out)
    assert again["changes"] == []
    assert again["actions"] == ["nothing to do"]
    no_secret(out, err)


def test_deleted_tenant_is_recreated(fake: FakeDescope, repo: Path) -> None:
    run(repo, "snapshot", "--from-descope")
    del fake.tenants["acme-corp-emea"]
    code, out, err = run(
        repo, "restore", "latest", "--tenant", "acme-corp-emea", "--to-descope", "--yes"
    )
    assert code == 0, err
    assert "re-created" in out
    assert fake.tenants["acme-corp-emea"]["name"] == "Acme Corporation (EMEA)"
    assert run(repo, "restore", "latest", "--to-descope", "--yes")[0] == 2
    assert run(repo, "restore", "latest", "--dry-run")[0] == 2


def test_python_api_pull_and_restore(fake: FakeDescope, tmp_path: Path) -> None:
    service = BackupService(tmp_path / "b", clock=FakeClock())
    api = SdkTenantApi()
    path = service.create_backup_from_descope(
        api, "tenant-update", ["acme-corp-emea"], with_settings=True
    )
    loaded = service.load_backup(path)
    assert loaded.metadata.target_id == "acme-corp-emea"
    fake.tenants["acme-corp-emea"]["disabled"] = True
    preview: Any = service.restore_to_descope(path, "acme-corp-emea", api, dry_run=True)
    assert [c.path for c in preview.changes] == ["$.tenant.disabled"]
    done: Any = service.restore_to_descope(path, "acme-corp-emea", api)
    assert done.applied
    assert fake.tenants["acme-corp-emea"]["disabled"] is False


def test_restore_puts_saml_configuration_back(fake: FakeDescope, repo: Path) -> None:
    original = pull_acme_full(repo)["id"]
    saml_before = json.loads(json.dumps(fake.sso["acme-full"][0]["saml"]))
    broken = fake.sso["acme-full"][0]["saml"]
    broken["idpCertificate"] = "-----BEGIN CERTIFICATE-----\nrotated-by-mistake\n"
    broken["groupsMapping"] = []
    broken["defaultSSORoles"] = ["Nobody"]
    broken["idpSSOUrl"] = "https://wrong.example/sso"
    code, out, err = run(
        repo, "--json", "restore", original[:10], "--tenant", "acme-full", "--to-descope", "--yes"
    )
    assert code == 0, err
    result = json.loads(out)
    assert "SAML configuration updated" in result["actions"]
    restored = fake.sso["acme-full"][0]["saml"]
    for key in (
        "idpSSOUrl",
        "idpEntityId",
        "idpCertificate",
        "idpAdditionalCertificates",
        "groupsMapping",
        "defaultSSORoles",
        "groupsPriority",
        "spACSUrl",
        "spEntityId",
    ):
        assert restored[key] == saml_before[key], key
    code, out, _ = run(
        repo,
        "--json",
        "restore",
        original[:10],
        "--tenant",
        "acme-full",
        "--to-descope",
        "--dry-run",
    )
    assert json.loads(out)["changes"] == []


def test_oidc_and_named_sso_entries_are_reported_not_written(fake: FakeDescope) -> None:
    from casbak.descope_live import push_tenant

    calls: list[str] = []

    class Recorder:
        def update(self, tenant: dict[str, Any]) -> None:
            calls.append("update")

        def configure_saml(self, tenant_id: str, saml: dict[str, Any]) -> None:
            calls.append("saml")

    document = {
        "tenant": {"id": "t"},
        "sso": {
            "SSOSettings": [
                {"ssoId": "", "oidc": {"clientId": "abc", "clientSecret": ""}},
                {"ssoId": "second", "saml": {"idpSSOUrl": "https://idp"}},
            ]
        },
    }
    actions = push_tenant(Recorder(), document, exists=True)  # type: ignore[arg-type]
    assert calls == ["update"]
    assert any("OIDC configuration not written back" in a for a in actions)
    assert any("'second' not written back" in a for a in actions)


def test_pull_and_restore_with_an_encrypted_repository(
    fake: FakeDescope, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASBAK_PASSWORD", "descope backups")
    repo = tmp_path / "sealed"
    assert run(repo, "init", "--encrypt", "--kdf-memory", "8", "--kdf-iterations", "1")[0] == 0
    code, out, err = run(repo, "--json", "snapshot", "--from-descope", "--dry-run")
    assert code == 0, err
    assert {t["status"] for t in json.loads(out)["tenants"]} == {"new"}
    code, out, err = run(repo, "--json", "snapshot", "--from-descope")
    assert code == 0, err
    code, out, err = run(repo, "--json", "snapshot", "--from-descope", "--dry-run")
    assert {t["status"] for t in json.loads(out)["tenants"]} == {"unchanged"}
    fake.tenants["acme-corp-emea"]["name"] = "Renamed by mistake"
    code, out, err = run(
        repo, "--json", "restore", "latest", "--tenant", "acme-corp-emea", "--to-descope", "--yes"
    )
    assert code == 0, err
    assert json.loads(out)["undo_snapshot"] is not None
    assert fake.tenants["acme-corp-emea"]["name"] == "Acme Corporation (EMEA)"
    assert json.loads(run(repo, "--json", "verify")[1])["ok"] is True
    monkeypatch.delenv("CASBAK_PASSWORD")
    assert run(repo, "snapshot", "--from-descope")[0] == 13
