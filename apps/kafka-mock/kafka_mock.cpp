// kafka-mock: a Kafka cluster for tests and the demo, from librdkafka's mock
// cluster (Debian ships no Kafka broker). It starts N brokers on loopback
// that speak the Kafka protocol over TCP, so separate processes can share
// them, prints the bootstrap servers (and writes them to a file), and takes
// commands, one per line, on a control FIFO or standard input:
//
//   down ID|-1      disconnect broker ID (or all) and refuse new connections
//   up ID|-1        accept connections again
//   topic NAME N    create topic NAME with N partitions
//
// SIGTERM or SIGINT ends it. Not for production: it keeps about 5 MB per
// partition and nothing on disk.
#include <caf/actor_system_config.hpp>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

namespace {

struct mock_config : caf::actor_system_config {
  int brokers = 3;
  std::string bootstrap_file;
  std::string control;

  mock_config() {
    opt_group{custom_options_, "global"}
      .add(brokers, "brokers", "number of brokers (default 3)")
      .add(bootstrap_file, "bootstrap-file",
           "write the bootstrap servers to this file once listening")
      .add(control, "control",
           "read commands from this FIFO (default: standard input)");
  }
};

/// Runs one command line; prints what it did or why not.
void run(rd_kafka_mock_cluster_t* cluster, const std::string& line) {
  std::istringstream in{line};
  std::string cmd;
  in >> cmd;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (cmd == "down" || cmd == "up") {
    int id = -1;
    if (!(in >> id)) {
      std::cerr << "kafka-mock: usage: " << cmd << " ID|-1\n";
      return;
    }
    err = cmd == "down" ? rd_kafka_mock_broker_set_down(cluster, id)
                        : rd_kafka_mock_broker_set_up(cluster, id);
  } else if (cmd == "topic") {
    std::string name;
    int partitions = 0;
    if (!(in >> name >> partitions) || partitions <= 0) {
      std::cerr << "kafka-mock: usage: topic NAME PARTITIONS\n";
      return;
    }
    err = rd_kafka_mock_topic_create(cluster, name.c_str(), partitions, 1);
  } else if (!cmd.empty()) {
    std::cerr << "kafka-mock: unknown command " << cmd << "\n";
    return;
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    std::cerr << "kafka-mock: " << line << ": " << rd_kafka_err2str(err)
              << "\n";
  else if (!cmd.empty())
    std::cerr << "kafka-mock: " << line << ": done\n";
}

} // namespace

int main(int argc, char** argv) {
  mock_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "kafka-mock: " << caf::to_string(err) << "\n";
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  if (cfg.brokers < 1) {
    std::cerr << "kafka-mock: --brokers must be at least 1\n";
    return 2;
  }
  // Signals are taken by sigwait below, not by a handler.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  char errstr[512];
  auto* conf = rd_kafka_conf_new();
  // The handle only hosts the cluster.
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
  auto* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    std::cerr << "kafka-mock: " << errstr << "\n";
    return 1;
  }
  auto* cluster = rd_kafka_mock_cluster_new(rk, cfg.brokers);
  if (cluster == nullptr) {
    std::cerr << "kafka-mock: cannot start the mock cluster\n";
    return 1;
  }
  std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
  if (!cfg.bootstrap_file.empty()) {
    // Written whole, then renamed: a reader never sees half of it.
    auto tmp = cfg.bootstrap_file + ".tmp";
    std::ofstream{tmp} << bootstrap << "\n";
    if (std::rename(tmp.c_str(), cfg.bootstrap_file.c_str()) != 0) {
      std::cerr << "kafka-mock: cannot write " << cfg.bootstrap_file << "\n";
      return 1;
    }
  }
  std::cout << bootstrap << std::endl;
  std::thread{[cluster, control = cfg.control] {
    if (control.empty()) {
      for (std::string line; std::getline(std::cin, line);)
        run(cluster, line);
      return;
    }
    // Opened for writing too, so that it never reads end-of-file when a
    // writer goes.
    std::fstream fifo{control, std::ios::in | std::ios::out};
    for (std::string line; std::getline(fifo, line);)
      run(cluster, line);
  }}.detach();
  int sig = 0;
  sigwait(&stop, &sig);
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  return 0;
}
