#include "connection.hpp"

#include "es/redis/redis.hpp"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <sys/time.h>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <memory>
#include <utility>

namespace es::detail::redis {

namespace {

struct reply_deleter {
  void operator()(redisReply* r) const noexcept {
    freeReplyObject(r);
  }
};

using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

/// Copies hiredis's reply tree into an owning `reply`.
reply convert(const redisReply& r) {
  switch (r.type) {
    case REDIS_REPLY_STRING:
      return reply::make_string(std::string(r.str, r.len));
    case REDIS_REPLY_STATUS:
      return reply::make_status(std::string(r.str, r.len));
    case REDIS_REPLY_ERROR: return reply::make_error(std::string(r.str, r.len));
    case REDIS_REPLY_INTEGER:
      return reply::make_integer(static_cast<int64_t>(r.integer));
    case REDIS_REPLY_ARRAY: {
      std::vector<reply> elements;
      elements.reserve(r.elements);
      for (size_t i = 0; i < r.elements; ++i)
        elements.push_back(convert(*r.element[i]));
      return reply::make_array(std::move(elements));
    }
    default: return reply{}; // REDIS_REPLY_NIL (RESP2 knows no other kind)
  }
}

/// A socket timeout; zero (or less) means none.
timeval to_timeval(std::chrono::milliseconds x) {
  timeval tv{};
  if (x.count() <= 0)
    return tv;
  tv.tv_sec = static_cast<time_t>(x.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((x.count() % 1000) * 1000);
  return tv;
}

/// hiredis writes with write(2), which raises SIGPIPE on a connection the
/// server closed. Blocks SIGPIPE in this thread for the guard's lifetime and
/// discards one the guarded calls raised (a SIGPIPE pending before stays
/// pending), as libpq does; errno survives the guard.
class sigpipe_guard {
public:
  sigpipe_guard() {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old_);
    was_pending_ = pending();
  }

  ~sigpipe_guard() {
    int saved_errno = errno;
    if (!was_pending_ && pending()) {
      sigset_t only;
      sigemptyset(&only);
      sigaddset(&only, SIGPIPE);
      timespec zero{};
      while (sigtimedwait(&only, nullptr, &zero) < 0 && errno == EINTR) {
        // retry
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    errno = saved_errno;
  }

  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;

private:
  static bool pending() {
    sigset_t set;
    sigemptyset(&set);
    return sigpending(&set) == 0 && sigismember(&set, SIGPIPE) == 1;
  }

  sigset_t old_;
  bool was_pending_ = false;
};

/// Pointers and lengths of one command for hiredis's Argv functions; valid
/// while `args` lives.
struct argv {
  explicit argv(const std::vector<std::string>& args) {
    ptrs.reserve(args.size());
    lens.reserve(args.size());
    for (const auto& arg : args) {
      ptrs.push_back(arg.data());
      lens.push_back(arg.size());
    }
  }

  int argc() const {
    return static_cast<int>(ptrs.size());
  }

  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
};

std::string hiredis_version() {
  return std::to_string(HIREDIS_MAJOR) + "." + std::to_string(HIREDIS_MINOR)
         + "." + std::to_string(HIREDIS_PATCH);
}

} // namespace

// -- opening ------------------------------------------------------------------

caf::expected<connection>
connection::open(const redis_url& url,
                 std::chrono::milliseconds connect_timeout,
                 std::chrono::milliseconds command_timeout) {
  if (url.tls)
    return make_redis_error(redis_errc::tls_unsupported,
                            "cannot connect to " + to_string(url)
                              + ": TLS (rediss://) needs hiredis 1.0 or later "
                                "with hiredis_ssl; this build uses hiredis "
                              + hiredis_version()
                              + ", which has no TLS support");
  auto endpoint = url.host.find(':') != std::string::npos
                    ? "[" + url.host + "]:" + std::to_string(url.port)
                    : url.host + ":" + std::to_string(url.port);
  redisContext* ctx = connect_timeout.count() > 0
                        ? redisConnectWithTimeout(url.host.c_str(), url.port,
                                                  to_timeval(connect_timeout))
                        : redisConnect(url.host.c_str(), url.port);
  if (ctx == nullptr)
    return make_redis_error(redis_errc::connection_failed,
                            "cannot connect to Redis at " + endpoint
                              + ": hiredis could not allocate a context");
  if (ctx->err != 0) {
    std::string msg
      = "cannot connect to Redis at " + endpoint + ": " + ctx->errstr;
    redisFree(ctx);
    return make_redis_error(redis_errc::connection_failed, std::move(msg));
  }
  connection conn{ctx, std::move(endpoint), command_timeout};
  // hiredis keeps the connect timeout as the socket timeout of every later
  // call; the command timeout replaces it.
  if (auto err = conn.set_timeout(command_timeout))
    return err;
  std::vector<std::vector<std::string>> setup;
  bool auth = !url.password.empty() || !url.username.empty();
  if (auth) {
    std::vector<std::string> cmd{"AUTH"};
    if (!url.username.empty())
      cmd.push_back(url.username);
    cmd.push_back(url.password);
    setup.push_back(std::move(cmd));
  }
  // SELECT even for database 0: a server that wants a password the URL
  // lacks refuses it with NOAUTH, so such a connection fails here and not
  // at its first command.
  setup.push_back({"SELECT", std::to_string(url.db)});
  auto replies = conn.pipeline(setup);
  if (!replies)
    return std::move(replies.error());
  const auto& ep = conn.endpoint();
  if (auth && (*replies)[0].is_error())
    return make_redis_error(redis_errc::authentication_failed,
                            "Redis at " + ep + " refused the credentials of "
                              + to_string(url) + ": " + (*replies)[0].str());
  if (auto err = to_error(replies->back(), "Redis at " + ep + ": SELECT "
                                             + std::to_string(url.db)))
    return err;
  return conn;
}

connection::connection(redisContext* ctx, std::string endpoint,
                       std::chrono::milliseconds command_timeout)
  : ctx_(ctx), endpoint_(std::move(endpoint)),
    command_timeout_(command_timeout), current_timeout_(command_timeout) {
  // nop
}

connection::connection(connection&& other) noexcept
  : ctx_(std::exchange(other.ctx_, nullptr)),
    endpoint_(std::move(other.endpoint_)),
    command_timeout_(other.command_timeout_),
    current_timeout_(other.current_timeout_), broken_(other.broken_),
    broken_reason_(std::move(other.broken_reason_)) {
  // nop
}

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    if (ctx_ != nullptr)
      redisFree(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
    endpoint_ = std::move(other.endpoint_);
    command_timeout_ = other.command_timeout_;
    current_timeout_ = other.current_timeout_;
    broken_ = other.broken_;
    broken_reason_ = std::move(other.broken_reason_);
  }
  return *this;
}

connection::~connection() {
  if (ctx_ != nullptr)
    redisFree(ctx_);
}

// -- commands -----------------------------------------------------------------

caf::expected<reply>
connection::command(std::vector<std::string> args,
                    std::optional<std::chrono::milliseconds> timeout) {
  if (broken())
    return broken_error();
  if (args.empty())
    return make_redis_error(redis_errc::protocol_error,
                            "Redis at " + endpoint_ + ": empty command");
  if (timeout && *timeout != current_timeout_)
    if (auto err = set_timeout(*timeout))
      return err;
  argv a{args};
  reply_ptr raw;
  int saved_errno = 0;
  {
    sigpipe_guard guard;
    errno = 0;
    raw.reset(static_cast<redisReply*>(
      redisCommandArgv(ctx_, a.argc(), a.ptrs.data(), a.lens.data())));
    saved_errno = errno;
  }
  if (raw == nullptr)
    return fail(args.front(), saved_errno);
  auto result = convert(*raw);
  // The reply is here: a failure to restore the timeout breaks the
  // connection for later calls but does not hide the command's outcome.
  if (current_timeout_ != command_timeout_)
    static_cast<void>(set_timeout(command_timeout_));
  return result;
}

caf::expected<std::vector<reply>>
connection::pipeline(const std::vector<std::vector<std::string>>& commands) {
  if (broken())
    return broken_error();
  std::vector<reply> result;
  if (commands.empty())
    return result;
  // Check everything before appending anything: a refused pipeline leaves
  // nothing behind in hiredis's output buffer.
  for (const auto& args : commands)
    if (args.empty())
      return make_redis_error(redis_errc::protocol_error,
                              "Redis at " + endpoint_
                                + ": empty command in a pipeline");
  for (const auto& args : commands) {
    argv a{args};
    errno = 0;
    if (redisAppendCommandArgv(ctx_, a.argc(), a.ptrs.data(), a.lens.data())
        != REDIS_OK)
      return fail(args.front(), errno);
  }
  result.reserve(commands.size());
  sigpipe_guard guard;
  for (const auto& args : commands) {
    void* out = nullptr;
    errno = 0;
    int rc = redisGetReply(ctx_, &out);
    int saved_errno = errno;
    reply_ptr raw{static_cast<redisReply*>(out)};
    if (rc != REDIS_OK || raw == nullptr)
      return fail(args.front(), saved_errno);
    result.push_back(convert(*raw));
  }
  return result;
}

// -- failures -----------------------------------------------------------------

caf::error connection::set_timeout(std::chrono::milliseconds timeout) {
  if (redisSetTimeout(ctx_, to_timeval(timeout)) != REDIS_OK) {
    broken_ = true;
    broken_reason_ = "cannot set the socket timeout";
    return make_redis_error(redis_errc::connection_failed,
                            "Redis at " + endpoint_ + ": " + broken_reason_);
  }
  current_timeout_ = timeout;
  return caf::none;
}

caf::error connection::fail(const std::string& what, int saved_errno) {
  broken_ = true;
  auto code = redis_errc::connection_failed;
  std::string detail = ctx_->err != 0 ? ctx_->errstr : "no reply";
  switch (ctx_->err) {
    case REDIS_ERR_IO:
      if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK) {
        code = redis_errc::timeout;
        detail = "no answer within " + std::to_string(current_timeout_.count())
                 + " ms";
      }
      break;
    case REDIS_ERR_PROTOCOL:
    case REDIS_ERR_OOM: code = redis_errc::protocol_error; break;
    default: break; // EOF, OTHER: the connection is gone
  }
  broken_reason_ = what + ": " + detail;
  return make_redis_error(code, "Redis at " + endpoint_ + ": " + what + ": "
                                  + detail);
}

caf::error connection::broken_error() const {
  if (ctx_ == nullptr)
    return make_redis_error(redis_errc::connection_failed,
                            "the Redis connection was moved from");
  return make_redis_error(redis_errc::connection_failed,
                          "Redis at " + endpoint_
                            + ": the connection is broken (" + broken_reason_
                            + "); open a new one");
}

} // namespace es::detail::redis
