// The fault-injecting PostgreSQL proxy: an accept thread, and per proxied
// connection a tunnel thread that polls both sockets, splits each direction
// into protocol messages and asks the rule about each before forwarding it.
#include "pg_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <vector>

namespace es::test {

namespace {

constexpr uint32_t cancel_request_code = 80877102;
constexpr uint32_t ssl_request_code = 80877103;
constexpr uint32_t gssenc_request_code = 80877104;

/// The server refuses longer startup packets (MAX_STARTUP_PACKET_LENGTH).
constexpr uint32_t max_startup_length = 10000;

/// No valid message is longer (the server's own limit is 1 GiB).
constexpr uint32_t max_message_length = 0x40000000;

/// Bytes read per recv call.
constexpr size_t read_chunk = 64 * 1024;

/// A side stops being read while the other side has this much unsent, so a
/// peer that does not read cannot make the proxy buffer without bound.
constexpr size_t high_water = 1024 * 1024;

uint32_t read_be32(const char* p) {
  unsigned char b[4];
  std::memcpy(b, p, 4);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8)
         | uint32_t{b[3]};
}

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void set_nodelay(int fd) {
  // Messages go out as they are decided; Nagle would hold small ones back.
  int one = 1;
  static_cast<void>(
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
}

/// How a side's bytes split into messages.
enum class framing {
  /// int32 length + body: the client before its StartupMessage.
  untyped,
  /// Type byte + int32 length + body.
  typed,
  /// After the server accepted SSL or GSS encryption: not parsed.
  opaque,
};

/// One socket of a tunnel: the bytes read from it and not yet framed, and
/// the bytes waiting to be written to it.
struct peer {
  peer(bool client, framing initial) : from_client(client), mode(initial) {
    // nop
  }

  int fd = -1;
  bool from_client;
  framing mode;
  bool eof = false;
  std::string in;
  size_t in_pos = 0;
  std::string out;
  size_t out_pos = 0;

  size_t unsent() const {
    return out.size() - out_pos;
  }

  void queue(std::string_view bytes) {
    if (out_pos == out.size()) {
      out.clear();
      out_pos = 0;
    } else if (out_pos >= high_water) {
      out.erase(0, out_pos);
      out_pos = 0;
    }
    out.append(bytes);
  }
};

/// A complete message at the front of a peer's input.
struct frame {
  char type = 0;
  /// The payload after the length word.
  std::string_view body;
  /// The whole message as received.
  std::string_view raw;
  /// The server's one-byte answer to SSLRequest / GSSENCRequest.
  bool answer = false;
  /// An untyped frontend message (StartupMessage and friends).
  bool untyped = false;
};

enum class frame_status { complete, incomplete, malformed };

/// Finds the next message of `p`'s input; `answer_due` when the server owes
/// an answer byte.
frame_status next_frame(const peer& p, bool answer_due, frame& f) {
  std::string_view rest{p.in};
  rest.remove_prefix(p.in_pos);
  if (answer_due) {
    if (rest.empty())
      return frame_status::incomplete;
    f = frame{0, rest.substr(0, 1), rest.substr(0, 1), true, false};
    return frame_status::complete;
  }
  if (p.mode == framing::untyped) {
    if (rest.size() < 4)
      return frame_status::incomplete;
    auto len = read_be32(rest.data());
    if (len < 8 || len > max_startup_length)
      return frame_status::malformed;
    if (rest.size() < len)
      return frame_status::incomplete;
    f = frame{0, rest.substr(4, len - 4), rest.substr(0, len), false, true};
    return frame_status::complete;
  }
  if (rest.size() < 5)
    return frame_status::incomplete;
  auto len = read_be32(rest.data() + 1);
  if (rest[0] == 0 || len < 4 || len > max_message_length)
    return frame_status::malformed;
  if (rest.size() - 1 < len)
    return frame_status::incomplete;
  f = frame{rest[0], rest.substr(5, len - 4), rest.substr(0, len + 1), false,
            false};
  return frame_status::complete;
}

/// The NUL-terminated string at `pos` of `body`; moves `pos` past it.
std::optional<std::string_view> cstring_at(std::string_view body, size_t& pos) {
  if (pos >= body.size())
    return std::nullopt;
  auto end = body.find('\0', pos);
  if (end == std::string_view::npos)
    return std::nullopt;
  auto result = body.substr(pos, end - pos);
  pos = end + 1;
  return result;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

/// Quotes a value for a keyword/value connection string.
std::string quote_dsn_value(std::string_view value) {
  std::string result = "'";
  for (char c : value) {
    if (c == '\\' || c == '\'')
      result += '\\';
    result += c;
  }
  return result + "'";
}

/// The set options of a connection string; throws std::invalid_argument.
class dsn_options {
public:
  explicit dsn_options(const std::string& dsn) {
    char* err = nullptr;
    opts_ = PQconninfoParse(dsn.c_str(), &err);
    if (opts_ == nullptr) {
      std::string msg = err != nullptr ? err : "out of memory";
      PQfreemem(err);
      throw std::invalid_argument("cannot parse the DSN '" + dsn + "': " + msg);
    }
  }

  ~dsn_options() {
    PQconninfoFree(opts_);
  }

  dsn_options(const dsn_options&) = delete;
  dsn_options& operator=(const dsn_options&) = delete;

  /// Calls `f(keyword, value)` for every option the string sets.
  template <class F>
  void for_each(F f) const {
    for (auto* o = opts_; o->keyword != nullptr; ++o)
      if (o->val != nullptr)
        f(std::string_view{o->keyword}, std::string_view{o->val});
  }

  /// The value of `keyword`, empty when unset.
  std::string get(std::string_view keyword) const {
    std::string result;
    for_each([&](std::string_view k, std::string_view v) {
      if (k == keyword)
        result = v;
    });
    return result;
  }

private:
  PQconninfoOption* opts_ = nullptr;
};

/// The first element of a libpq comma-separated list.
std::string first_of_list(const std::string& list) {
  return list.substr(0, list.find(','));
}

/// Whether a ready-made rule may still cut; shared by the rule's copies.
class trigger {
public:
  explicit trigger(pg_rule_shots shots) : shots_(shots) {
    // nop
  }

  bool fire() {
    if (shots_ == pg_rule_shots::every_time)
      return true;
    return !fired_.exchange(true);
  }

private:
  pg_rule_shots shots_;
  std::atomic<bool> fired_{false};
};

/// Connections on which a ready-made rule waits for its second message.
class armed_connections {
public:
  void arm(uint64_t connection) {
    std::lock_guard guard{mtx_};
    armed_.insert(connection);
  }

  /// Disarms `connection`; returns whether it was armed.
  bool disarm(uint64_t connection) {
    std::lock_guard guard{mtx_};
    return armed_.erase(connection) > 0;
  }

private:
  std::mutex mtx_;
  std::unordered_set<uint64_t> armed_;
};

} // namespace

// -- proxy state
// ---------------------------------------------------------------

struct pg_proxy::state {
  class tunnel;

  sockaddr_storage upstream{};
  socklen_t upstream_len = 0;
  int listen_fd = -1;
  uint16_t port = 0;
  /// Written to by the destructor to wake the accept thread.
  int wake_read = -1;
  int wake_write = -1;
  std::thread acceptor;

  /// Serialises rule calls and guards `rule`; recursive so that a rule may
  /// replace itself.
  std::recursive_mutex rule_mtx;
  std::shared_ptr<const pg_proxy_rule> rule;

  std::mutex tunnels_mtx;
  std::vector<std::unique_ptr<tunnel>> tunnels;

  std::atomic<size_t> cuts{0};
  std::atomic<uint64_t> accepted{0};

  ~state() {
    for (int fd : {listen_fd, wake_read, wake_write})
      if (fd >= 0)
        ::close(fd);
  }

  pg_proxy_action decide(const pg_message& msg) {
    std::lock_guard guard{rule_mtx};
    // A copy, so a rule that replaces itself stays alive until it returns.
    auto current = rule;
    if (current == nullptr || !*current)
      return pg_proxy_action::forward;
    try {
      return (*current)(msg);
    } catch (...) {
      return pg_proxy_action::cut_before;
    }
  }

  void accept_loop();
  void cut_all();
};

/// One proxied connection and the thread that pumps it.
class pg_proxy::state::tunnel {
public:
  tunnel(state& owner, uint64_t id, int client_fd) : owner_(owner), id_(id) {
    client_.fd = client_fd;
  }

  ~tunnel() {
    join();
  }

  tunnel(const tunnel&) = delete;
  tunnel& operator=(const tunnel&) = delete;

  void start() {
    thread_ = std::thread{[this] {
      run();
    }};
  }

  /// Closes the connection from another thread: counts the cut and shuts
  /// both sockets down, which wakes the tunnel's poll; its thread then
  /// closes them without delivering what it still holds.
  void cut_now() {
    std::lock_guard guard{fd_mtx_};
    if (closed_)
      return;
    count_cut();
    forced_ = true;
    for (int fd : {client_.fd, server_.fd})
      if (fd >= 0)
        ::shutdown(fd, SHUT_RDWR);
  }

  bool finished() const {
    return finished_;
  }

  void join() {
    if (thread_.joinable())
      thread_.join();
  }

private:
  void run() {
    if (connect_upstream())
      pump();
    close_both();
    finished_ = true;
  }

  void count_cut() {
    if (!counted_.exchange(true))
      ++owner_.cuts;
  }

  void close_both() {
    std::lock_guard guard{fd_mtx_};
    for (int* fd : {&client_.fd, &server_.fd})
      if (*fd >= 0) {
        ::shutdown(*fd, SHUT_RDWR);
        ::close(*fd);
        *fd = -1;
      }
    closed_ = true;
  }

  /// Connects to the server without blocking a cut.
  bool connect_upstream() {
    int fd = ::socket(owner_.upstream.ss_family,
                      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return false;
    {
      std::lock_guard guard{fd_mtx_};
      server_.fd = fd;
      if (forced_)
        return false;
    }
    set_nodelay(client_.fd);
    set_nodelay(fd);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&owner_.upstream),
                  owner_.upstream_len)
        == 0)
      return true;
    if (errno != EINPROGRESS)
      return false;
    for (;;) {
      // The client socket only reports hang-ups here (a cut shuts it down).
      pollfd fds[2] = {{fd, POLLOUT, 0}, {client_.fd, 0, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR)
          continue;
        return false;
      }
      if (forced_ || fds[1].revents != 0)
        return false;
      if (fds[0].revents != 0) {
        int err = 0;
        socklen_t len = sizeof err;
        return ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0
               && err == 0;
      }
    }
  }

  /// What to wait for on `p`.
  pollfd watch(const peer& p, const peer& other) const {
    short events = 0;
    // While draining, input is read and dropped, so that a peer blocked
    // writing to us reads again (and takes what we still have to deliver).
    if (!p.eof && (draining_ || other.unsent() < high_water))
      events |= POLLIN;
    if (p.unsent() > 0)
      events |= POLLOUT;
    return pollfd{events != 0 ? p.fd : -1, events, 0};
  }

  /// Moves bytes both ways until a side ends, a cut, or an error.
  void pump() {
    peer* peers[2] = {&client_, &server_};
    for (;;) {
      if (forced_)
        return;
      if (draining_ && client_.unsent() == 0 && server_.unsent() == 0)
        return;
      pollfd fds[2] = {watch(client_, server_), watch(server_, client_)};
      if (fds[0].fd < 0 && fds[1].fd < 0)
        return;
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR)
          continue;
        return;
      }
      if (forced_)
        return;
      for (int i = 0; i < 2; ++i) {
        auto& p = *peers[i];
        auto revents = fds[i].revents;
        if ((revents & POLLNVAL) != 0)
          return;
        if ((fds[i].events & POLLIN) != 0
            && (revents & (POLLIN | POLLHUP | POLLERR)) != 0
            && !receive(p, *peers[1 - i]))
          return;
      }
      // Deliver what arrived without waiting for another round; a peer
      // that hung up fails here.
      if (!flush(client_) || !flush(server_))
        return;
    }
  }

  /// Writes what `p` can take now; false on a write error.
  static bool flush(peer& p) {
    while (p.unsent() > 0) {
      auto n = ::send(p.fd, p.out.data() + p.out_pos, p.unsent(), MSG_NOSIGNAL);
      if (n > 0) {
        p.out_pos += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    p.out.clear();
    p.out_pos = 0;
    return true;
  }

  /// Reads what `from` has, handing complete messages on towards `to`;
  /// false on a read error or a malformed message.
  bool receive(peer& from, peer& to) {
    char chunk[read_chunk];
    for (;;) {
      if (!draining_ && to.unsent() >= high_water)
        return true;
      auto n = ::recv(from.fd, chunk, sizeof chunk, 0);
      if (n == 0) {
        // One side ended: deliver what the other side is owed, then close.
        from.eof = true;
        draining_ = true;
        return true;
      }
      if (n < 0) {
        if (errno == EINTR)
          continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
      }
      if (draining_)
        continue;
      from.in.append(chunk, static_cast<size_t>(n));
      if (!dispatch(from, to))
        return false;
    }
  }

  /// Asks the rule about each complete message of `from` and queues the
  /// forwarded ones on `to`.
  bool dispatch(peer& from, peer& to) {
    for (;;) {
      if (draining_) {
        from.in.clear();
        from.in_pos = 0;
        return true;
      }
      if (from.mode == framing::opaque) {
        to.queue(std::string_view{from.in}.substr(from.in_pos));
        from.in.clear();
        from.in_pos = 0;
        return true;
      }
      frame f;
      auto status = next_frame(from, !from.from_client && answers_due_ > 0, f);
      if (status == frame_status::malformed)
        return false;
      if (status == frame_status::incomplete)
        break;
      // `f` views `from.in`, which stays put until the loop moves on.
      from.in_pos += f.raw.size();
      if (f.answer)
        --answers_due_;
      auto action
        = owner_.decide(pg_message{id_, from.from_client, f.type, f.body});
      if (action == pg_proxy_action::cut_before) {
        count_cut();
        draining_ = true;
        continue;
      }
      to.queue(f.raw);
      after_forwarding(f);
      if (action == pg_proxy_action::cut_after) {
        count_cut();
        draining_ = true;
      }
    }
    if (from.in_pos == from.in.size()) {
      from.in.clear();
      from.in_pos = 0;
    } else if (from.in_pos >= read_chunk) {
      from.in.erase(0, from.in_pos);
      from.in_pos = 0;
    }
    return true;
  }

  /// Follows the protocol's untyped start.
  void after_forwarding(const frame& f) {
    if (f.untyped) {
      auto code = read_be32(f.body.data());
      if (code == ssl_request_code || code == gssenc_request_code)
        ++answers_due_;
      else if (code != cancel_request_code)
        client_.mode = framing::typed; // a StartupMessage
    } else if (f.answer && (f.body[0] == 'S' || f.body[0] == 'G')) {
      client_.mode = framing::opaque;
      server_.mode = framing::opaque;
    }
  }

  state& owner_;
  uint64_t id_;
  peer client_{true, framing::untyped};
  peer server_{false, framing::typed};
  /// Answer bytes the server owes for SSLRequest / GSSENCRequest.
  size_t answers_due_ = 0;
  /// Reading no more: delivering what is queued, then closing.
  bool draining_ = false;
  /// Guards the descriptors against closing while cut_now shuts them down.
  std::mutex fd_mtx_;
  bool closed_ = false;
  std::atomic<bool> forced_{false};
  std::atomic<bool> counted_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

void pg_proxy::state::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_read, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    if (fds[1].revents != 0 || (fds[0].revents & (POLLERR | POLLNVAL)) != 0)
      return;
    if ((fds[0].revents & POLLIN) == 0)
      continue;
    int fd
      = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK
          || errno == ECONNABORTED)
        continue;
      return;
    }
    std::lock_guard guard{tunnels_mtx};
    // Reap tunnels whose threads have ended.
    tunnels.erase(std::remove_if(tunnels.begin(), tunnels.end(),
                                 [](const auto& t) {
                                   return t->finished();
                                 }),
                  tunnels.end());
    tunnels.push_back(std::make_unique<tunnel>(*this, ++accepted, fd));
    tunnels.back()->start();
  }
}

void pg_proxy::state::cut_all() {
  std::lock_guard guard{tunnels_mtx};
  for (auto& t : tunnels)
    t->cut_now();
}

// -- pg_proxy
// -------------------------------------------------------------------

pg_proxy::pg_proxy(std::string upstream_host, uint16_t upstream_port)
  : state_(std::make_unique<state>()) {
  auto& st = *state_;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto service = std::to_string(upstream_port);
  if (int rc
      = ::getaddrinfo(upstream_host.c_str(), service.c_str(), &hints, &found);
      rc != 0)
    throw std::runtime_error("pg_proxy: cannot resolve '" + upstream_host
                             + "': " + ::gai_strerror(rc));
  // Prefer IPv4: "localhost" may come first as ::1, where a server bound to
  // 127.0.0.1 does not listen.
  auto* chosen = found;
  for (auto* ai = found; ai != nullptr; ai = ai->ai_next)
    if (ai->ai_family == AF_INET) {
      chosen = ai;
      break;
    }
  std::memcpy(&st.upstream, chosen->ai_addr, chosen->ai_addrlen);
  st.upstream_len = chosen->ai_addrlen;
  ::freeaddrinfo(found);

  st.listen_fd
    = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (st.listen_fd < 0)
    throw_errno("pg_proxy: socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t addr_len = sizeof addr;
  if (::bind(st.listen_fd, reinterpret_cast<const sockaddr*>(&addr), addr_len)
        != 0
      || ::listen(st.listen_fd, SOMAXCONN) != 0
      || ::getsockname(st.listen_fd, reinterpret_cast<sockaddr*>(&addr),
                       &addr_len)
           != 0)
    throw_errno("pg_proxy: cannot listen on 127.0.0.1");
  st.port = ntohs(addr.sin_port);
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC) != 0)
    throw_errno("pg_proxy: pipe");
  st.wake_read = wake[0];
  st.wake_write = wake[1];
  st.acceptor = std::thread{[&st] {
    st.accept_loop();
  }};
}

pg_proxy::~pg_proxy() {
  auto& st = *state_;
  char byte = 1;
  [[maybe_unused]] auto written = ::write(st.wake_write, &byte, 1);
  if (st.acceptor.joinable())
    st.acceptor.join();
  // No new tunnels now; cut and join the open ones.
  std::vector<std::unique_ptr<state::tunnel>> open;
  {
    std::lock_guard guard{st.tunnels_mtx};
    open.swap(st.tunnels);
  }
  for (auto& t : open)
    t->cut_now();
  for (auto& t : open)
    t->join();
}

uint16_t pg_proxy::port() const {
  return state_->port;
}

std::string pg_proxy::dsn(const std::string& base_dsn) const {
  // Rebuilt rather than appended to: libpq does let a later keyword win, but
  // a `hostaddr` in the base would still take the connection elsewhere, and
  // a URI cannot take keywords appended.
  dsn_options opts{base_dsn};
  std::string result;
  opts.for_each([&](std::string_view keyword, std::string_view value) {
    if (keyword == "host" || keyword == "hostaddr" || keyword == "port")
      return;
    result += keyword;
    result += '=';
    result += quote_dsn_value(value);
    result += ' ';
  });
  return result + "host=127.0.0.1 port=" + std::to_string(port());
}

void pg_proxy::set_rule(pg_proxy_rule rule) {
  auto next = std::make_shared<const pg_proxy_rule>(std::move(rule));
  std::lock_guard guard{state_->rule_mtx};
  state_->rule.swap(next);
  // The previous rule dies here or, when called from inside it, when that
  // call returns.
}

void pg_proxy::clear_rule() {
  set_rule(nullptr);
}

void pg_proxy::cut_all() {
  state_->cut_all();
}

size_t pg_proxy::cuts() const {
  return state_->cuts;
}

size_t pg_proxy::connections() const {
  return state_->accepted;
}

pg_endpoint pg_endpoint_of(const std::string& dsn) {
  dsn_options opts{dsn};
  auto env = [](const char* name) -> std::string {
    const char* value = std::getenv(name);
    return value != nullptr ? value : "";
  };
  std::string host = first_of_list(opts.get("hostaddr"));
  if (host.empty())
    host = first_of_list(opts.get("host"));
  if (host.empty())
    host = first_of_list(env("PGHOSTADDR"));
  if (host.empty())
    host = first_of_list(env("PGHOST"));
  if (host.empty() || host.front() == '/' || host.front() == '@')
    throw std::invalid_argument("the DSN '" + dsn
                                + "' names no TCP host for the proxy");
  std::string port = first_of_list(opts.get("port"));
  if (port.empty())
    port = first_of_list(env("PGPORT"));
  pg_endpoint result;
  result.host = host;
  if (!port.empty()) {
    char* end = nullptr;
    auto n = std::strtol(port.c_str(), &end, 10);
    if (*end != '\0' || n <= 0 || n > 65535)
      throw std::invalid_argument("the DSN '" + dsn + "' has a bad port");
    result.port = static_cast<uint16_t>(n);
  }
  return result;
}

// -- reading messages ---------------------------------------------------------

std::optional<std::string_view> pg_command_tag(const pg_message& msg) {
  if (msg.from_client || msg.type != 'C')
    return std::nullopt;
  size_t pos = 0;
  return cstring_at(msg.body, pos);
}

std::optional<std::string_view> pg_error_sqlstate(const pg_message& msg) {
  if (msg.from_client || msg.type != 'E')
    return std::nullopt;
  // Fields: a code byte and a string each, up to a 0 byte.
  size_t pos = 0;
  while (pos < msg.body.size() && msg.body[pos] != '\0') {
    char code = msg.body[pos++];
    auto value = cstring_at(msg.body, pos);
    if (!value)
      return std::nullopt;
    if (code == 'C')
      return value;
  }
  return std::nullopt;
}

std::optional<std::string_view> pg_query_text(const pg_message& msg) {
  if (!msg.from_client)
    return std::nullopt;
  size_t pos = 0;
  if (msg.type == 'Q')
    return cstring_at(msg.body, pos);
  if (msg.type == 'P' && cstring_at(msg.body, pos)) // statement name first
    return cstring_at(msg.body, pos);
  return std::nullopt;
}

std::optional<std::string_view> pg_bind_statement(const pg_message& msg) {
  if (!msg.from_client || msg.type != 'B')
    return std::nullopt;
  size_t pos = 0;
  if (!cstring_at(msg.body, pos)) // portal name first
    return std::nullopt;
  return cstring_at(msg.body, pos);
}

// -- ready-made rules ---------------------------------------------------------

namespace pg_rules {

pg_proxy_rule cut_before_command_complete(std::string tag,
                                          pg_rule_shots shots) {
  auto shot = std::make_shared<trigger>(shots);
  return [tag = std::move(tag), shot](const pg_message& msg) {
    auto done = pg_command_tag(msg);
    if (done && starts_with(*done, tag) && shot->fire())
      return pg_proxy_action::cut_before;
    return pg_proxy_action::forward;
  };
}

pg_proxy_rule cut_before_ready_after(std::string tag, pg_rule_shots shots) {
  auto shot = std::make_shared<trigger>(shots);
  auto armed = std::make_shared<armed_connections>();
  return [tag = std::move(tag), shot, armed](const pg_message& msg) {
    if (auto done = pg_command_tag(msg)) {
      if (starts_with(*done, tag))
        armed->arm(msg.connection);
    } else if (!msg.from_client && msg.type == 'Z') {
      if (armed->disarm(msg.connection) && shot->fire())
        return pg_proxy_action::cut_before;
    }
    return pg_proxy_action::forward;
  };
}

pg_proxy_rule cut_before_sync_after_bind(std::string statement,
                                         pg_rule_shots shots) {
  auto shot = std::make_shared<trigger>(shots);
  auto armed = std::make_shared<armed_connections>();
  return
    [statement = std::move(statement), shot, armed](const pg_message& msg) {
      if (auto bound = pg_bind_statement(msg)) {
        if (*bound == statement)
          armed->arm(msg.connection);
      } else if (msg.from_client && msg.type == 'S') {
        if (armed->disarm(msg.connection) && shot->fire())
          return pg_proxy_action::cut_before;
      }
      return pg_proxy_action::forward;
    };
}

pg_proxy_rule cut_after_error(std::string sqlstate, pg_rule_shots shots) {
  auto shot = std::make_shared<trigger>(shots);
  return [sqlstate = std::move(sqlstate), shot](const pg_message& msg) {
    auto state = pg_error_sqlstate(msg);
    if (state && starts_with(*state, sqlstate) && shot->fire())
      return pg_proxy_action::cut_after;
    return pg_proxy_action::forward;
  };
}

pg_proxy_rule cut_before_query(std::string prefix, pg_rule_shots shots) {
  auto shot = std::make_shared<trigger>(shots);
  return [prefix = std::move(prefix), shot](const pg_message& msg) {
    if (msg.type != 'Q')
      return pg_proxy_action::forward;
    auto text = pg_query_text(msg);
    if (!text)
      return pg_proxy_action::forward;
    auto first = text->find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos)
      return pg_proxy_action::forward;
    auto head = text->substr(first, prefix.size());
    auto lower = [](char c) {
      return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    };
    bool matches = head.size() == prefix.size()
                   && std::equal(head.begin(), head.end(), prefix.begin(),
                                 [&](char a, char b) {
                                   return lower(a) == lower(b);
                                 });
    if (matches && shot->fire())
      return pg_proxy_action::cut_before;
    return pg_proxy_action::forward;
  };
}

} // namespace pg_rules

} // namespace es::test
