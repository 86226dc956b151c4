#!/usr/bin/env bash
# Installs the framework from a build tree into a temporary prefix, builds
# the quickstart as an outside project against the installed package
# (CMake and pkg-config), runs it, and checks that a SQLite-only program
# does not link libpq.
#
# Usage: consume.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "consume: $*" >&2
  exit 1
}

cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log"; fail "cmake --install failed"; }
for f in include/es/store/event_store.hpp include/es/sqlite/sqlite.hpp \
         include/es/actors/aggregate_region.hpp \
         include/es/testing/aggregate_scenario.hpp \
         include/es/testing/store_contract.hpp \
         lib/cmake/eventsource/eventsource-config.cmake \
         lib/cmake/eventsource/FindCAF.cmake lib/pkgconfig/eventsource.pc; do
  [ -e "$work/prefix/$f" ] || fail "not installed: $f"
done
# No private header leaks into the installed tree.
if find "$work/prefix/include" -name 'append_rules.hpp' -o -name 'connection.hpp' \
    | grep -q .; then
  fail "private headers were installed"
fi

cmake -S "$source/tests/package/consumer" -B "$work/consumer" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release \
  -DQUICKSTART_SOURCE="$source/apps/quickstart/quickstart.cpp" \
  >"$work/configure.log" 2>&1 \
  || { cat "$work/configure.log"; fail "the consumer does not configure"; }
cmake --build "$work/consumer" -j 2 >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; fail "the consumer does not build"; }

out=$("$work/consumer/quickstart" --path="$work/quickstart.db" 2>&1) \
  || { echo "$out"; fail "the consumer's quickstart failed"; }
echo "$out" | grep -q "the repository saved version 4, balance 2605" \
  || { echo "$out"; fail "the consumer's quickstart printed something else"; }

# The exported contract suite runs against the consumer's own adapter.
out=$("$work/consumer/my_store_contract" 2>&1) \
  || { echo "$out" | tail -40; fail "the contract suite failed on the consumer's adapter"; }
cases=$(echo "$out" | sed -n 's/^All tests passed (\([0-9]*\) assertions in \([0-9]*\) test cases)$/\2/p')
[ -n "$cases" ] && [ "$cases" -ge 24 ] \
  || { echo "$out" | tail -5; fail "the contract suite ran too few test cases: ${cases:-none}"; }

if ldd "$work/consumer/quickstart" | grep -Eq 'libpq|libhiredis|librabbitmq|librdkafka'; then
  ldd "$work/consumer/quickstart"
  fail "a SQLite-only program links libpq or a broker client"
fi

# A component that was not built is reported, not silently accepted.
mkdir -p "$work/missing"
cat >"$work/missing/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(missing LANGUAGES CXX)
find_package(eventsource REQUIRED COMPONENTS no_such_module)
CMAKE
if cmake -S "$work/missing" -B "$work/missing/build" \
    -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/missing.log" 2>&1; then
  fail "an unknown component was accepted"
fi

# pkg-config sees the package too.
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --exists eventsource \
  || fail "pkg-config does not find eventsource"
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs \
  eventsource | grep -q -- "-les_store" \
  || fail "pkg-config does not name the libraries"
echo "consume: the installed package builds and runs the quickstart and the contract suite ($cases test cases)"
