#!/usr/bin/env bash
# The main job on the embedded default: two rounds of the sample tenants into a
# fresh local repository, then list, stats, diff, log, restore and verify; ends
# with an HTML report (.demo/report.html).
set -euo pipefail
repo=${1:-.demo/repo}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$repo" "$(dirname "$repo")/restored"
export CASBAK_REPO=$repo
run() { printf '\n$ %s\n' "$*"; "$@"; }

run casbak init
run casbak snapshot "$here/tenants/round-1" --operation sync-apply --description "before first sync"
run casbak snapshot "$here/tenants/round-2" --operation sync-apply --description "after edits"
run casbak snapshot "$here/tenants/round-2/globex-us.json" --operation tenant-update
run casbak list
run casbak stats
run casbak diff latest:all-tenants~1 latest:all-tenants
run casbak log globex-us -p
run casbak restore globex-us@latest --output "$(dirname "$repo")/restored"
run casbak show latest
run casbak verify
run casbak export --all -o "$(dirname "$repo")/all.casbak" --force
run casbak verify --bundle "$(dirname "$repo")/all.casbak"
rm -rf "$(dirname "$repo")/copy"
run casbak --repo "$(dirname "$repo")/copy" init
run casbak --repo "$(dirname "$repo")/copy" import "$(dirname "$repo")/all.casbak"
run casbak --repo "$(dirname "$repo")/copy" verify
casbak verify --json > "$(dirname "$repo")/verify.json"
run casbak report --verify "$(dirname "$repo")/verify.json" -o "$(dirname "$repo")/report.html"
echo
echo "Report: open $(cd "$(dirname "$repo")" && pwd)/report.html in a browser (it needs no network)."
