// The in-memory key store.
#include "es/shred/key_store.hpp"
#include "es/store/errors.hpp"

#include "crypto.hpp"

#include <map>
#include <mutex>
#include <set>

namespace es {

namespace {

class memory_key_store final : public key_store {
public:
  std::string name() const override {
    return "memory";
  }

  bool blocking() const override {
    return false;
  }

  caf::expected<subject_key>
  get_or_create_key(const std::string& subject) override {
    if (subject.empty())
      return empty_subject();
    std::lock_guard guard{mtx_};
    auto i = keys_.find(subject);
    if (i == keys_.end())
      i = keys_.emplace(subject, shred_detail::generate_key()).first;
    return i->second;
  }

  caf::expected<std::map<std::string, subject_key>>
  get_keys(const std::vector<std::string>& subjects) override {
    std::map<std::string, subject_key> result;
    std::lock_guard guard{mtx_};
    for (const auto& s : subjects)
      if (auto i = keys_.find(s); i != keys_.end())
        result.emplace(s, i->second);
    return result;
  }

  caf::error add_stream(const std::string& subject,
                        const stream_id& stream) override {
    if (subject.empty())
      return empty_subject();
    std::lock_guard guard{mtx_};
    streams_[subject].insert(stream);
    return caf::none;
  }

  caf::expected<std::vector<stream_id>>
  streams(const std::string& subject) override {
    std::lock_guard guard{mtx_};
    std::vector<stream_id> result;
    if (auto i = streams_.find(subject); i != streams_.end())
      result.assign(i->second.begin(), i->second.end());
    return result;
  }

  caf::expected<forget_result> forget(const std::string& subject) override {
    std::lock_guard guard{mtx_};
    forget_result result;
    result.key_deleted = keys_.erase(subject) > 0;
    if (auto i = streams_.find(subject); i != streams_.end()) {
      result.streams.assign(i->second.begin(), i->second.end());
      streams_.erase(i);
    }
    return result;
  }

private:
  static caf::error empty_subject() {
    return make_store_error(store_errc::invalid_argument,
                            "a subject id must not be empty");
  }

  std::mutex mtx_;
  std::map<std::string, subject_key> keys_;
  std::map<std::string, std::set<stream_id>> streams_;
};

} // namespace

key_store_ptr make_memory_key_store() {
  static_cast<void>(shred_detail::ensure_sodium());
  return std::make_shared<memory_key_store>();
}

} // namespace es
