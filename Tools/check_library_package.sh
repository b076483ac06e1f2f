#!/usr/bin/env bash
# Builds a separate package that depends on Flint the way a user's package does — by URL and version tag — in
# release mode, and runs the README's library example (Examples/Library/main.swift) with it on the demo model.
#
# The committed state (HEAD) is cloned to a scratch folder and tagged 0.1.0 there, so neither this checkout
# nor its tags change; the scratch folder is removed at the end. `make library-check` runs this.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="${FLINT_CHECK_VERSION:-0.1.0}"
TEMP="${TMPDIR:-/tmp}"
WORK="$(mktemp -d "${TEMP%/}/flint-library-check.XXXXXX")"
# SwiftPM also leaves lock files named after the build folder in the temporary folder
# (/tmp/_tmp_flint-library-check.XXXXXX_app_.build.lock, ...): remove those with the scratch folder.
cleanup() {
    rm -rf "$WORK"
    rm -f "${TEMP%/}/$(printf '%s' "$WORK" | tr / _)"_*.lock
}
trap cleanup EXIT

git clone --quiet --no-local "$ROOT" "$WORK/flint"
git -C "$WORK/flint" tag --force "$VERSION" >/dev/null

mkdir -p "$WORK/app/Sources/Ask"
cat > "$WORK/app/Package.swift" <<PACKAGE
// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Ask",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(url: "file://$WORK/flint", from: "$VERSION"),
    ],
    targets: [
        .executableTarget(name: "Ask", dependencies: [.product(name: "Flint", package: "flint")]),
    ]
)
PACKAGE
cp "$ROOT/Examples/Library/main.swift" "$WORK/app/Sources/Ask/main.swift"

started=$(date +%s)
swift build --package-path "$WORK/app" -c release
built=$(date +%s)
echo "release build of the dependent package: $((built - started)) s (load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime))"

"$WORK/app/.build/release/Ask" "$ROOT/Tests/Fixtures/models/demo" "$WORK/demo-int8.flint" | tee "$WORK/answer.txt"
printf 'blue apple red\ndog cat\nthree two one\nstar moon sun\n' > "$WORK/expected.txt"
if ! diff -u "$WORK/expected.txt" "$WORK/answer.txt"; then
    echo "library-check: the dependent package did not give the demo's answers" >&2
    exit 1
fi
echo "library-check: a package depending on Flint $VERSION by URL built in release mode and answered the demo"
