// The aggregate the command benchmarks drive: a counter.
#pragma once

#include "es/actors/aggregate.hpp"
#include "es/actors/aggregate_actor.hpp"
#include "es/projections/type_ids.hpp"

#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

namespace es::bench::counter_bench {

struct incremented {
  static constexpr std::string_view event_type = "Incremented";
  static constexpr int32_t event_version = 1;
  int64_t by = 0;
};

template <class F>
bool fields(F& f, incremented& x) {
  return f("by", x.by);
}

struct increment {
  int64_t by = 1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, increment& x) {
  return f(caf::meta::type_name("esbench.increment"), x.by);
}

/// Loads the aggregate without changing it.
struct touch {
  int8_t unused = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, touch& x) {
  return f(caf::meta::type_name("esbench.touch"), x.unused);
}

struct counter_state {
  int64_t value = 0;
};

template <class F>
bool fields(F& f, counter_state& x) {
  return f("value", x.value);
}

class counter : public aggregate<counter_state> {
public:
  static constexpr std::string_view aggregate_type = "Counter";
  using commands = command_list<increment, touch>;

  counter(uuid id, std::shared_ptr<const event_registry> registry)
    : aggregate(std::string{aggregate_type}, id, std::move(registry)) {
    on<incremented>([](counter_state& s, const incremented& e) {
      s.value += e.by;
    });
  }

  caf::error handle(const increment& cmd) {
    return emit(incremented{cmd.by});
  }

  caf::error handle(const touch&) {
    return caf::none;
  }
};

inline std::shared_ptr<event_registry> make_registry() {
  auto reg = std::make_shared<event_registry>();
  static_cast<void>(reg->add<incremented>());
  return reg;
}

} // namespace es::bench::counter_bench

// With the cluster scenario, esbench also sends the orders demo's commands:
// its types follow theirs.
#ifdef ES_BENCH_CLUSTER
#  include "order.hpp"
#  define ES_BENCH_FIRST_TYPE_ID caf::id_block::orders::end
#else
#  define ES_BENCH_FIRST_TYPE_ID caf::id_block::es_projections::end
#endif

CAF_BEGIN_TYPE_ID_BLOCK(esbench, ES_BENCH_FIRST_TYPE_ID)

CAF_ADD_TYPE_ID(esbench, (es::bench::counter_bench::increment))
CAF_ADD_TYPE_ID(esbench, (es::bench::counter_bench::touch))
CAF_ADD_TYPE_ID(esbench, (std::vector<double>))

CAF_END_TYPE_ID_BLOCK(esbench)
