#!/bin/sh
# Puts the protovalidate rules the policy schema imports (buf/validate/validate.proto) where
# buf.yaml looks for them, .buf-deps/ (not committed), from the Go module that publishes them:
# no schema registry is needed, and the module's checksum is verified as for any Go module.
set -eu
version=v1.2.2
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir=$(cd "$work" && go mod download -json "github.com/bufbuild/protovalidate@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "proto/deps.sh: could not download github.com/bufbuild/protovalidate@$version" >&2; exit 1; }
dest="$root/.buf-deps/protovalidate/buf/validate"
mkdir -p "$dest"
cp "$dir/proto/protovalidate/buf/validate/validate.proto" "$dest/validate.proto"
chmod 644 "$dest/validate.proto"
