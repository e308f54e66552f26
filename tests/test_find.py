"""casbak find: versions of tenants across history, by tenant id and by query."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import click
import msgspec
import pytest
from click.testing import CliRunner

from casbak import findtenants
from casbak.backends.local import LocalBackend
from casbak.catalogdata import CATALOG_VERSION, JournalEntry
from casbak.cli import cli, main
from casbak.errors import BackendError, ObjectMissing, QueryError, UsageError
from casbak.findtenants import FoundVersion, find_versions
from casbak.ids import Digest
from casbak.layout import CATALOG_PART_PREFIX
from casbak.query import compile_query
from casbak.repository import Repository
from casbak.service import take_snapshot
from casbak.sources import documents_from_values
from tests.conftest import ROOT, FakeClock, tree_state
from tests.packed import flip_inside

Tenant = dict[str, Any]


class Story:
    """A repository on disk and a clock; each `take` is one snapshot an hour after the last."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.repo = Repository.init(LocalBackend(path))
        self.clock = FakeClock()

    def take(self, *tenants: Tenant, target: str = "prod") -> str:
        self.clock.advance(hours=1)
        documents = documents_from_values(tenants, "t")
        return take_snapshot(self.repo, documents, target_id=target, clock=self.clock).snapshot.id

    def find(self, **options: Any) -> list[FoundVersion]:
        options["queries"] = [compile_query(text) for text in options.pop("where", ())]
        result = find_versions(Repository.open(LocalBackend(self.path)), **options)
        assert result.warnings == []
        return result.versions


def acme(sso: bool, seats: int = 10) -> Tenant:
    return {"id": "acme-corp", "name": "Acme", "enforceSSO": sso, "seats": seats}


def beta(sso: bool) -> Tenant:
    return {"id": "beta", "name": "Beta", "enforceSSO": sso}


def rows(found: list[FoundVersion]) -> list[tuple[str, int, str, str]]:
    """(tenant, snapshots, first id, last id) per row, short enough to compare."""
    return [(v.tenant_id, v.snapshots, v.first.id[:8], v.last.id[:8]) for v in found]


@pytest.fixture
def story(tmp_path: Path) -> Story:
    return Story(tmp_path / "repo")


@pytest.fixture(params=["journal", "compacted"])
def abba(request: pytest.FixtureRequest, story: Story) -> tuple[Story, list[str]]:
    """acme goes A -> B -> A over four snapshots; beta is in the first three only."""
    ids = [
        story.take(acme(True), beta(False)),
        story.take(acme(False), beta(False)),
        story.take(acme(True), beta(True)),
        story.take(acme(True)),
    ]
    if request.param == "compacted":
        assert story.repo.catalog.compact()
    return story, ids


# --- the service ----------------------------------------------------------------------------


def test_a_version_held_again_later_is_one_row(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    found = story.find(tenant_ids=["acme-corp"])
    short = [i[:8] for i in ids]
    # A: snapshots 1, 3 and 4, newest first; then B: snapshot 2 alone.
    assert rows(found) == [
        ("acme-corp", 3, short[0], short[3]),
        ("acme-corp", 1, short[1], short[1]),
    ]
    assert found[0].object != found[1].object
    assert found[0].first.timestamp < found[0].last.timestamp
    assert found[0].first.timestamp.tzinfo is not None
    assert found[0].first.operation == "manual"
    assert found[0].first.target_id == "prod"
    held = story.repo.resolve(ids[0]).manifest.entries["acme-corp"]
    assert (found[0].object, found[0].size) == (held.object, held.size)


def test_log_lists_runs_where_find_lists_versions(abba: tuple[Story, list[str]]) -> None:
    from casbak.tenanthistory import tenant_log

    story, _ = abba
    assert len(tenant_log(story.repo, "acme-corp")) == 3
    assert len(story.find(tenant_ids=["acme-corp"])) == 2


def test_where_keeps_the_versions_a_query_matches(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    found = story.find(where=["$.enforceSSO == true"])
    assert [(v.tenant_id, v.snapshots) for v in found] == [("acme-corp", 3), ("beta", 1)]
    assert found[1].first.id == ids[2]
    assert story.find(where=["$.enforceSSO == false"], tenant_ids=["beta"])[0].snapshots == 2
    assert story.find(where=["$.nothing exists"]) == []


def test_every_where_must_hold(story: Story) -> None:
    story.take(acme(True, seats=5), beta(True))
    story.take(acme(True, seats=50), beta(True))
    found = story.find(where=["$.enforceSSO == true", "$.seats > 20"])
    assert [(v.tenant_id, v.snapshots) for v in found] == [("acme-corp", 1)]


def test_tenant_and_where_together_and_unknown_tenants(abba: tuple[Story, list[str]]) -> None:
    story, _ = abba
    found = story.find(tenant_ids=["beta", "nobody"], where=['$.name == "Beta"'])
    assert [v.tenant_id for v in found] == ["beta", "beta"]
    assert story.find(tenant_ids=["nobody"]) == []


def test_tenants_come_by_id(story: Story) -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    story.take(*({"id": name} for name in names))
    assert [v.tenant_id for v in story.find(where=["$.id exists"])] == sorted(names)


def test_a_tenant_gone_from_later_snapshots_is_still_found(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    story.take(acme(False))
    found = story.find(tenant_ids=["beta"])
    assert rows(found) == [("beta", 1, ids[2][:8], ids[2][:8]), ("beta", 2, ids[0][:8], ids[1][:8])]
    current = story.find(tenant_ids=["beta"], current=True)
    assert [v.object for v in current] == [found[0].object]


def test_current_keeps_each_tenants_newest_version(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    found = story.find(where=["$.id exists"], current=True)
    assert [(v.tenant_id, v.last.id) for v in found] == [("acme-corp", ids[3]), ("beta", ids[2])]
    # As of the second snapshot, acme's newest version was B.
    until = story.repo.resolve(ids[1]).header.timestamp
    older = story.find(tenant_ids=["acme-corp"], current=True, until=until)
    assert [(v.snapshots, v.first.id) for v in older] == [(1, ids[1])]
    # A current version that a query does not match is not replaced by an older one.
    assert story.find(tenant_ids=["beta"], current=True, where=["$.enforceSSO == false"]) == []


def test_since_and_until_keep_versions_held_in_that_time(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    times = [story.repo.resolve(i).header.timestamp for i in ids]
    middle = story.find(tenant_ids=["acme-corp"], since=times[1], until=times[1])
    # Only B was held then; a kept version still counts all its snapshots.
    assert rows(middle) == [("acme-corp", 1, ids[1][:8], ids[1][:8])]
    late = story.find(tenant_ids=["acme-corp"], since=times[2])
    assert rows(late) == [("acme-corp", 3, ids[0][:8], ids[3][:8])]
    assert story.find(tenant_ids=["acme-corp"], until=times[0] - timedelta(seconds=1)) == []


def test_a_removed_snapshot_is_no_longer_counted(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    story.repo.delete_snapshots([story.repo.resolve(ids[3]).key])
    found = story.find(tenant_ids=["acme-corp"])
    assert rows(found) == [
        ("acme-corp", 2, ids[0][:8], ids[2][:8]),
        ("acme-corp", 1, ids[1][:8], ids[1][:8]),
    ]
    story.repo.delete_snapshots([story.repo.resolve(ids[1]).key])
    assert rows(story.find(tenant_ids=["acme-corp"])) == [("acme-corp", 2, ids[0][:8], ids[2][:8])]


@pytest.mark.parametrize("compact", [False, True])
def test_a_removal_the_journal_tells_of_is_honoured(story: Story, compact: bool) -> None:
    first = story.take(acme(True))
    story.repo.catalog.compact()
    last = story.take(acme(True))
    gone = story.take(acme(False))
    if compact:
        story.repo.catalog.compact()
    # A journaled removal (a compacted position, and a journaled addition).
    removal = JournalEntry(
        CATALOG_VERSION, 0.0, removed=[bytes.fromhex(first), bytes.fromhex(gone)]
    )
    story.repo.catalog.append(removal)
    assert rows(story.find(tenant_ids=["acme-corp"])) == [("acme-corp", 1, last[:8], last[:8])]
    story.repo.catalog.compact()
    assert rows(story.find(tenant_ids=["acme-corp"])) == [("acme-corp", 1, last[:8], last[:8])]


def test_needs_a_tenant_or_a_query(story: Story) -> None:
    with pytest.raises(UsageError):
        find_versions(story.repo)


def test_same_time_ties_go_by_snapshot_id(tmp_path: Path) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    moment = datetime(2025, 11, 17, 10, 30, tzinfo=UTC)
    ids = [
        take_snapshot(
            repo, documents_from_values([acme(True)], "t"), description=str(n), clock=lambda: moment
        ).snapshot.id
        for n in range(4)
    ]
    for _ in range(2):
        found = find_versions(repo, tenant_ids=["acme-corp"]).versions
        assert [(v.snapshots, v.first.id, v.last.id) for v in found] == [(4, min(ids), max(ids))]
        repo.catalog.compact()


def _expected(repo: Repository) -> list[tuple[str, str, int, str, str]]:
    """find's answer worked out the slow way, from every manifest."""
    held: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
    for snapshot in repo.snapshots():
        for tenant_id, entry in snapshot.manifest.entries.items():
            held.setdefault((tenant_id, entry.object), []).append(
                (snapshot.header.timestamp, snapshot.id)
            )
    newest = {key: max(holders) for key, holders in held.items()}
    answer = sorted(held, key=lambda key: newest[key], reverse=True)
    answer.sort(key=lambda key: key[0])
    return [
        (tenant, obj, len(held[tenant, obj]), min(held[tenant, obj])[1], newest[tenant, obj][1])
        for tenant, obj in answer
    ]


def test_matches_the_manifests_over_a_long_random_history(story: Story) -> None:
    chance = random.Random(7)
    ids = []
    for number in range(70):  # past two compactions, with a journal left over
        tenants = [
            {"id": f"t{n}", "v": chance.randrange(3)} for n in range(5) if chance.random() < 0.8
        ]
        ids.append(story.take(*tenants, target=f"target{number % 2}"))
        if number in (20, 45):
            story.repo.delete_snapshots([story.repo.resolve(ids[number - 3]).key])
    repo = Repository.open(LocalBackend(story.path))
    found = find_versions(repo, queries=[compile_query("$.v >= 0")]).versions
    got = [(v.tenant_id, v.object, v.snapshots, v.first.id, v.last.id) for v in found]
    assert got == _expected(repo)
    assert sum(v.snapshots for v in found) == sum(len(s.manifest.entries) for s in repo.snapshots())


def test_each_object_is_read_once_even_when_the_catalog_changes(
    abba: tuple[Story, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    story, _ = abba
    repo = Repository.open(LocalBackend(story.path))
    asked: list[str] = []
    real = repo.objects.read_many

    def read_many(digests: Any, **options: Any) -> Any:
        wanted = list(digests)
        asked.extend(wanted)
        return real(wanted, **options)

    monkeypatch.setattr(repo.objects, "read_many", read_many)
    real_record = findtenants.history.record
    calls = {"n": 0}

    def record(view: Any, holder: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:  # a compaction replaced the catalog after the documents were read
            raise ObjectMissing(CATALOG_PART_PREFIX + "gone")
        return real_record(view, holder)

    monkeypatch.setattr(findtenants.history, "record", record)
    found = find_versions(repo, queries=[compile_query("$.id exists")]).versions
    assert len(found) == 4
    assert len(asked) == len(set(asked)) == 4


def test_progress_is_reported_while_reading(story: Story) -> None:
    story.take(*({"id": f"t{n}"} for n in range(70)))
    seen: list[tuple[int, int, int]] = []
    find_versions(
        story.repo, queries=[compile_query("$.id exists")], progress=lambda *a: seen.append(a)
    )
    assert [s[:2] for s in seen] == [(64, 70), (70, 70)]
    assert seen[-1][2] > seen[0][2] > 0


# --- damage -----------------------------------------------------------------------------


@pytest.fixture
def damaged(story: Story) -> tuple[Story, str]:
    story.take(acme(True), beta(True))
    digest = story.repo.resolve("latest").manifest.entries["beta"].object
    flip_inside(story.path, digest)
    return story, digest


def test_an_unreadable_version_is_left_out_with_a_warning(damaged: tuple[Story, str]) -> None:
    story, digest = damaged
    repo = Repository.open(LocalBackend(story.path))
    result = find_versions(repo, queries=[compile_query("$.enforceSSO == true")])
    assert [v.tenant_id for v in result.versions] == ["acme-corp"]
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(f"tenant beta version {digest[:12]} cannot be read")
    # Without --where no document is read, so nothing is damaged for find.
    assert find_versions(repo, tenant_ids=["beta"]).warnings == []


def test_a_storage_failure_stops_the_search(
    damaged: tuple[Story, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    story, _ = damaged
    repo = Repository.open(LocalBackend(story.path))

    def failing(digests: Any, **_: Any) -> Iterator[tuple[Digest, Any]]:
        for digest in digests:
            yield Digest(digest), BackendError("permission denied")

    monkeypatch.setattr(repo.objects, "read_many", failing)
    with pytest.raises(BackendError, match="permission denied"):
        find_versions(repo, queries=[compile_query("$.id exists")])


def test_cli_exits_3_after_printing_what_it_found(damaged: tuple[Story, str]) -> None:
    story, digest = damaged
    result = invoke(story.path, "find", "--where", "$.id exists")
    assert result.exit_code == 3
    assert "acme-corp" in result.stdout
    assert result.stderr.startswith(f"warning: tenant beta version {digest[:12]} cannot be read")
    as_json = invoke(story.path, "--json", "find", "--where", "$.id exists")
    assert as_json.exit_code == 3
    assert [v["tenant_id"] for v in json.loads(as_json.stdout)] == ["acme-corp"]
    assert json.loads(as_json.stderr.splitlines()[0])["warning"].startswith("tenant beta")


# --- the command line -----------------------------------------------------------------------


class Run(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str


def invoke(path: Path, *args: str) -> Run:
    """Run the CLI through main(), so exit codes and error lines are the real ones."""
    code: list[int] = []

    @click.command()
    def wrapper() -> None:
        code.append(main(["--repo", str(path), *args]))

    result = CliRunner().invoke(wrapper, [], catch_exceptions=False)
    return Run(code[0], result.stdout, result.stderr)


def test_cli_text_table(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    result = invoke(story.path, "find", "--tenant", "acme-corp", "--tenant", "beta")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "TENANT",
        "VERSION",
        "SIZE",
        "SNAPSHOTS",
        "FIRST",
        "(UTC)",
        "LAST",
        "(UTC)",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["acme-corp", "acme-corp", "beta", "beta"]
    first = lines[1].split()
    assert first[0] == "acme-corp"
    assert len(first[1]) == 12
    assert first[4] == "3"  # size is "N B"
    assert ids[0][:12] in lines[1] and ids[3][:12] in lines[1]
    assert result.stderr == ""  # no progress bar when stderr is no terminal


def test_cli_json(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    result = invoke(story.path, "--json", "find", "--where", "$.enforceSSO == true", "--current")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert [set(v) for v in found] == [
        {"tenant_id", "object", "size", "snapshots", "first", "last"}
    ] * 2
    assert found[0]["first"] == {
        "id": ids[0],
        "timestamp": found[0]["first"]["timestamp"],
        "operation": "manual",
        "target_id": "prod",
    }
    assert found[0]["last"]["id"] == ids[3]
    assert found[0]["first"]["timestamp"].endswith("Z")
    assert len(found[0]["object"]) == 64
    assert result.stderr == ""


def test_cli_since_until_and_nothing_found(abba: tuple[Story, list[str]]) -> None:
    story, _ = abba
    result = invoke(story.path, "find", "--tenant", "acme-corp", "--until", "2000-01-01")
    assert (result.exit_code, result.stdout) == (0, "no version matches\n")
    result = invoke(story.path, "--json", "find", "--tenant", "acme-corp", "--since", "2000-01-01")
    assert len(json.loads(result.stdout)) == 2
    bad = invoke(story.path, "find", "--tenant", "acme-corp", "--since", "yesterday-ish")
    assert bad.exit_code == 2
    assert invoke(story.path, "-q", "find", "--tenant", "acme-corp").stdout == ""


def test_cli_forget_is_reflected(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    result = invoke(story.path, "forget", ids[1], "--no-prune")
    assert result.exit_code == 0, result.stderr
    found = json.loads(invoke(story.path, "--json", "find", "--tenant", "acme-corp").stdout)
    assert [(v["snapshots"], v["first"]["id"]) for v in found] == [(3, ids[0])]


def test_cli_needs_a_criterion(story: Story) -> None:
    result = invoke(story.path, "find")
    assert result.exit_code == 2
    assert "--tenant ID or --where QUERY" in result.stderr


@pytest.mark.parametrize("repo_exists", [True, False])
def test_cli_bad_query_fails_before_the_repository_is_opened(
    tmp_path: Path, repo_exists: bool
) -> None:
    path = tmp_path / "repo"
    if repo_exists:
        Story(path).take(acme(True))
    before = tree_state(tmp_path)
    result = invoke(path, "find", "--where", "$.enforceSSO == true", "--where", "$.x ==")
    assert result.exit_code == 1  # not 10 for the missing repository: nothing was opened
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("casbak: error: bad query at column 7")
    assert tree_state(tmp_path) == before
    with pytest.raises(QueryError):
        compile_query("$.x ==")


def test_progress_bar_only_for_long_reads_on_a_terminal(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casbak.cli import history

    drawn: list[tuple[int, int, int]] = []
    progress = history._when_long(lambda *a: drawn.append(a))
    assert progress is not None
    progress(10, 10, 100)
    progress(256, 300, 1000)
    assert drawn == [(256, 300, 1000)]
    assert history._when_long(None) is None


def test_cli_draws_a_progress_bar_on_a_terminal(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casbak.cli import history

    story.take(*({"id": f"t{n}"} for n in range(70)))
    monkeypatch.setattr(history, "LONG_READ", 1)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bars: list[str] = []

    class Bar:
        def __init__(self, ctx: Any, label: str) -> None:
            bars.append(label)

        def __enter__(self) -> Callable[[int, int, int], None]:
            return lambda done, total, read: bars.append(f"{done}/{total}")

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(history, "ProgressBar", Bar)
    result = invoke(story.path, "find", "--where", "$.id exists")
    assert result.exit_code == 0
    assert bars == ["reading documents", "64/70", "70/70"]


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(cli, ["find", "--help"])
    for option in ("--tenant", "--where", "--current", "--since", "--until"):
        assert option in result.stdout


def test_python_m_casbak_find(abba: tuple[Story, list[str]]) -> None:
    story, ids = abba
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "casbak",
            "--repo",
            str(story.path),
            "--json",
            "find",
            "--where",
            "$.enforceSSO == true",
            "--tenant",
            "acme-corp",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = msgspec.json.decode(run.stdout)
    assert [(v["snapshots"], v["first"]["id"], v["last"]["id"]) for v in found] == [
        (3, ids[0], ids[3])
    ]
    bad = subprocess.run(
        [sys.executable, "-m", "casbak", "--repo", str(story.path), "find", "--where", "$.a ="],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1
