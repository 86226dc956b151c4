// Shards: the fixed buckets aggregate ids hash into, the unit a cluster
// node owns.
#pragma once

#include "es/store/uuid.hpp"

#include <caf/meta/type_name.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace es {

/// The shard of aggregate `id` among `count` shards. The same hash as
/// projection partitions (`partition_spec`), FNV-1a over the id's bytes, so
/// it is stable across processes, machines and builds.
inline uint32_t shard_of(const uuid& id, uint32_t count) noexcept {
  return count <= 1 ? 0 : static_cast<uint32_t>(id.hash() % count);
}

/// Some of `count` shards, sorted.
struct shard_set {
  uint32_t count = 1;
  std::vector<uint32_t> shards;

  bool contains(uint32_t shard) const noexcept {
    return std::binary_search(shards.begin(), shards.end(), shard);
  }

  /// Whether aggregate `id` hashes into one of the shards.
  bool owns(const uuid& id) const noexcept {
    return contains(shard_of(id, count));
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, shard_set& x) {
    return f(caf::meta::type_name("es.shard_set"), x.count, x.shards);
  }
};

} // namespace es
