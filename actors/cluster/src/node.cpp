#include "es/cluster/node.hpp"

#include "es/actors/type_ids.hpp"
#include "es/projections/coordinator.hpp"
#include "es/projections/type_ids.hpp"
#include "es/store/errors.hpp"
#include "es/store/log.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/send.hpp>

#include "leases.hpp"
#include "router.hpp"

#include <mutex>
#include <set>

namespace es::cluster {

caf::error validate(const node_config& cfg) {
  auto bad = [](std::string why) {
    return make_store_error(store_errc::invalid_argument,
                            "cluster node: " + std::move(why));
  };
  if (cfg.node_id.empty())
    return bad("a node id is needed");
  if (cfg.dsn.empty())
    return bad("a PostgreSQL DSN is needed for the leases");
  if (cfg.shards == 0)
    return bad("the shard count must be at least 1");
  if (cfg.tick.count() <= 0)
    return bad("the lease tick must be positive");
  if (cfg.lease_ttl < 2 * cfg.tick)
    return bad("the lease TTL must be at least two ticks (it is "
               + std::to_string(cfg.lease_ttl.count()) + " ms, the tick "
               + std::to_string(cfg.tick.count()) + " ms)");
  if (cfg.command_deadline.count() <= 0 || cfg.forward_timeout.count() <= 0)
    return bad("the command deadline and forward timeout must be positive");
  return caf::none;
}

struct partitioned_spec {
  std::string name;
  uint32_t partitions = 0;
  std::function<projection_ptr(uint32_t)> make;
  subscription_config cfg;
};

class node_impl {
public:
  node_impl(caf::actor_system& sys, node_config cfg)
    : sys(sys), env(std::make_shared<detail::router_env>()) {
    env->cfg = std::move(cfg);
  }

  caf::actor_system& sys;
  std::shared_ptr<detail::router_env> env;
  std::vector<partitioned_spec> partitioned;
  std::unique_ptr<projection_coordinator> coordinator;
  std::unique_ptr<detail::lease_keeper> keeper;
  caf::actor router;
  uint16_t port = 0;
  bool started = false;
  mutable std::mutex mtx;
  std::set<std::string> running;

  static std::string worker_name(const partitioned_spec& p, uint32_t k) {
    return p.name + "#" + std::to_string(k) + "/"
           + std::to_string(p.partitions);
  }
};

node::node(caf::actor_system& sys, node_config cfg)
  : impl_(std::make_unique<node_impl>(sys, std::move(cfg))) {
  // nop
}

node::~node() {
  stop();
}

void node::add_region(region_options ropts, spawner fn,
                      std::vector<std::type_index> commands) {
  auto region = spawn_region_with(impl_->sys, ropts, std::move(fn));
  for (auto& t : commands)
    impl_->env->regions.emplace(t, region);
  impl_->env->all_regions.push_back(std::move(region));
}

void node::add_partitioned(std::string name, uint32_t partitions,
                           std::function<projection_ptr(uint32_t)> make,
                           subscription_config cfg) {
  impl_->partitioned.push_back(
    {std::move(name), partitions, std::move(make), std::move(cfg)});
}

caf::error node::start() {
  auto& d = *impl_;
  if (d.started)
    return caf::none;
  if (auto err = validate(d.env->cfg))
    return err;
  const auto& cfg = d.env->cfg;
  if (auto err = detail::create_cluster_tables(cfg.dsn))
    return err;
  d.coordinator = std::make_unique<projection_coordinator>(d.sys);
  std::vector<detail::lease_kind> kinds;
  kinds.push_back({shard_kind, cfg.shards, {}, {}});
  for (const auto& p : d.partitioned) {
    auto* spec = &p;
    auto* impl = impl_.get();
    detail::lease_kind k;
    k.kind = projection_kind(p.name);
    k.items = p.partitions;
    k.acquired = [impl, spec](uint32_t item, int64_t epoch) {
      auto wcfg = spec->cfg;
      wcfg.partition = partition_spec{item, spec->partitions};
      auto name = node_impl::worker_name(*spec, item);
      wcfg.checkpoint_name = name;
      if (auto err = impl->coordinator->add(spec->make(item), wcfg)) {
        log(log_level::error,
            "cluster node " + impl->env->cfg.node_id + ": cannot start " + name
              + ": " + describe(err),
            log_context{"cluster"});
        return;
      }
      log(log_level::info,
          "cluster node " + impl->env->cfg.node_id + " runs " + name
            + " (epoch " + std::to_string(epoch) + ")",
          log_context{"cluster"});
      std::lock_guard guard{impl->mtx};
      impl->running.insert(name);
    };
    k.released = [impl, spec](uint32_t item) {
      auto name = node_impl::worker_name(*spec, item);
      {
        std::lock_guard guard{impl->mtx};
        if (impl->running.erase(name) == 0)
          return;
      }
      if (auto err = impl->coordinator->remove(name))
        log(log_level::warning,
            "cluster node " + impl->env->cfg.node_id + ": stopping " + name
              + ": " + describe(err),
            log_context{"cluster"});
    };
    kinds.push_back(std::move(k));
  }
  // The keeper publishes views; the router reads them and learns of each
  // new one by a message.
  d.keeper = std::make_unique<detail::lease_keeper>(cfg, std::move(kinds));
  auto* keeper = d.keeper.get();
  d.env->view = [keeper] {
    return keeper->view();
  };
  d.router = detail::spawn_router(d.sys, d.env);
  auto port = d.sys.middleman().publish(
    d.router, cfg.port, cfg.host.empty() ? nullptr : cfg.host.c_str(), true);
  if (!port) {
    caf::anon_send_exit(d.router, caf::exit_reason::user_shutdown);
    d.router = nullptr;
    d.keeper.reset();
    return std::move(port.error());
  }
  d.port = *port;
  // Other nodes dial the port the system picked.
  d.keeper->set_port(d.port);
  d.keeper->start([router = d.router] {
    caf::anon_send(router, leases_atom_v);
  });
  d.started = true;
  return caf::none;
}

void node::stop() {
  auto& d = *impl_;
  if (!d.started)
    return;
  d.started = false;
  d.keeper->stop();
  d.coordinator->stop();
  d.sys.middleman().unpublish(d.router, d.port);
  caf::anon_send_exit(d.router, caf::exit_reason::user_shutdown);
  for (auto& r : d.env->all_regions)
    caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
}

caf::actor node::router() const {
  return impl_->router;
}

uint16_t node::port() const {
  return impl_->port;
}

const node_config& node::config() const {
  return impl_->env->cfg;
}

std::shared_ptr<const cluster_view> node::view() const {
  if (!impl_->keeper) {
    auto v = std::make_shared<cluster_view>();
    v->self = impl_->env->cfg.node_id;
    return v;
  }
  return impl_->keeper->view();
}

std::vector<std::string> node::running_partitions() const {
  std::lock_guard guard{impl_->mtx};
  return {impl_->running.begin(), impl_->running.end()};
}

void add_cluster_module(caf::actor_system_config& cfg) {
  add_projections_module(cfg);
  cfg.load<caf::io::middleman>();
}

} // namespace es::cluster
