#include "es/testing/scenario_result.hpp"

namespace es::testing {

check_result::check_result(bool passed) : ok_(passed) {
  if (!passed)
    why_ = "the check returned false";
}

check_result check_result::fail(std::string why) {
  check_result result;
  result.ok_ = false;
  result.why_ = why.empty() ? std::string{"the check failed"} : std::move(why);
  return result;
}

std::string scenario_result::explain() const {
  if (ok())
    return {};
  if (context_.empty())
    return failure_;
  return failure_ + "\n  in: " + context_;
}

void scenario_result::fail(std::string why) {
  if (failure_.empty())
    failure_ = why.empty() ? std::string{"failed"} : std::move(why);
}

std::ostream& operator<<(std::ostream& out, const scenario_result& x) {
  if (x.ok())
    return out << "ok";
  return out << x.explain();
}

} // namespace es::testing
