#!/usr/bin/env bash
# Checks that every C++ block in the docs is code the build compiles:
# - a block whose first line is "// NAME: ..." with NAME a file in
#   apps/examples is that whole file, byte for byte;
# - a block right after a line "<!-- snippet: PATH -->" is the whole file
#   PATH (relative to the source tree), and after
#   "<!-- snippet: PATH#REGION -->" it is the lines between "// [REGION]"
#   and "// [/REGION]" in PATH, less their common indentation;
# - any other C++ block is an error: nothing would keep it compiling.
# Then runs the examples whose output the docs quote.
#
# Usage: check_examples.sh SOURCE_DIR FIRST_LOOK_BINARY UPCASTING_BINARY
set -euo pipefail
src=$1
first_look=$2
upcasting=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked=0
failed=0

# Prints the region REGION of FILE without its common indentation.
region() {
  awk -v name="$2" '
    $0 ~ "^[ \t]*// \\[" name "\\][ \t]*$" { inside = 1; found = 1; next }
    $0 ~ "^[ \t]*// \\[/" name "\\][ \t]*$" { inside = 0; next }
    inside { lines[n++] = $0 }
    END {
      if (!found) exit 3
      min = -1
      for (i = 0; i < n; i++) {
        if (lines[i] ~ /^[ \t]*$/) continue
        match(lines[i], /^ */)
        if (min < 0 || RLENGTH < min) min = RLENGTH
      }
      for (i = 0; i < n; i++)
        print (lines[i] ~ /^[ \t]*$/ ? "" : substr(lines[i], min + 1))
    }
  ' "$1"
}

for doc in "$src"/README.md "$src"/docs/*.md; do
  base=$(basename "$doc")
  # Split the doc's ```cpp blocks into numbered files; NAME.N.meta holds
  # the block's line and the snippet marker before it (if any).
  awk -v dir="$work" -v base="$base" '
    /^```cpp$/ {
      n++; inblock = 1; out = dir "/" base "." n
      printf "" > out
      marker = (prev ~ /^<!-- snippet: .* -->$/) ? prev : ""
      print FNR " " marker > (out ".meta")
      close(out ".meta")
      prev = $0
      next
    }
    /^```$/ && inblock { inblock = 0; close(out); prev = $0; next }
    inblock { print > out }
    { prev = $0 }
  ' "$doc"
  for meta in "$work/$base".*.meta; do
    [ -e "$meta" ] || continue
    block=${meta%.meta}
    read -r line marker <"$meta"
    where="$base:$line"
    if [ -n "$marker" ]; then
      target=$(echo "$marker" | sed -n 's|^<!-- snippet: \([^ ]*\) -->$|\1|p')
      path=${target%%#*}
      if [ ! -f "$src/$path" ]; then
        echo "docs: $where: $path does not exist" >&2
        failed=1
        continue
      fi
      if [ "$path" = "$target" ]; then
        cp "$src/$path" "$work/expected"
      elif ! region "$src/$path" "${target#*#}" >"$work/expected"; then
        echo "docs: $where: $path has no region [${target#*#}]" >&2
        failed=1
        continue
      fi
    else
      name=$(head -1 "$block" | sed -n 's|^// \([a-z_]*\):.*|\1|p')
      if [ -z "$name" ] || [ ! -e "$src/apps/examples/$name.cpp" ]; then
        echo "docs: $where: a C++ block that no build compiles; make it an" \
             "example in apps/examples or mark it <!-- snippet: PATH#REGION -->" >&2
        failed=1
        continue
      fi
      cp "$src/apps/examples/$name.cpp" "$work/expected"
    fi
    if ! diff -u "$work/expected" "$block" >&2; then
      echo "docs: $where shows ${target:-apps/examples/$name.cpp} differently" >&2
      failed=1
      continue
    fi
    checked=$((checked + 1))
  done
done
[ "$failed" -eq 0 ] || exit 1
if [ "$checked" -eq 0 ]; then
  echo "docs: no C++ block found" >&2
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
echo "docs: $checked C++ blocks match the code they show; the examples run"
