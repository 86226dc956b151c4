#!/usr/bin/env bash
# Checks that every C++ block in the docs that shows a whole example
# program (its first line is "// NAME: ...", NAME a file in apps/examples)
# is that file, byte for byte, so what the docs show is what the build
# compiles; then runs the first-look example.
#
# Usage: check_examples.sh SOURCE_DIR FIRST_LOOK_BINARY UPCASTING_BINARY
set -euo pipefail
src=$1
first_look=$2
upcasting=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked=0
for doc in "$src"/README.md "$src"/docs/*.md; do
  # Split the doc's ```cpp blocks into numbered files.
  awk -v dir="$work" -v base="$(basename "$doc")" '
    /^```cpp$/ { n++; inblock = 1; out = dir "/" base "." n; next }
    /^```$/ && inblock { inblock = 0; next }
    inblock { print > out }
  ' "$doc"
  for block in "$work/$(basename "$doc")".*; do
    [ -e "$block" ] || continue
    name=$(head -1 "$block" | sed -n 's|^// \([a-z_]*\):.*|\1|p')
    [ -n "$name" ] && [ -e "$src/apps/examples/$name.cpp" ] || continue
    if ! diff -u "$src/apps/examples/$name.cpp" "$block"; then
      echo "docs: $(basename "$doc") shows $name.cpp differently" >&2
      exit 1
    fi
    checked=$((checked + 1))
  done
done
if [ "$checked" -eq 0 ]; then
  echo "docs: no example block found" >&2
  exit 1
fi
out=$("$first_look" "$work/events.db")
echo "$out" | grep -q "appended version 1 at position 1" || {
  echo "docs: first_look printed: $out" >&2
  exit 1
}
out=$("$upcasting")
echo "$out" | grep -q "^1200 cents in EUR$" || {
  echo "docs: upcasting printed: $out" >&2
  exit 1
}
echo "docs: $checked example blocks match their files; the examples run"
