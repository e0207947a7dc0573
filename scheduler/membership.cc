#include "scheduler/membership.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tessera::scheduler {
namespace {

constexpr size_t kMaxNameLength = 128;

uint32_t RandomIncarnation() {
  std::random_device rd;
  return static_cast<uint32_t>(rd());
}

}  // namespace

Membership::Membership(Clock* clock, absl::Duration heartbeat_timeout)
    : clock_(clock), heartbeat_timeout_(heartbeat_timeout), incarnation_(RandomIncarnation()) {}

absl::StatusOr<Node> Membership::Register(NodeRole role, const std::string& name,
                                          const std::string& address) {
  if (role != SERVER && role != WORKER) {
    return absl::InvalidArgumentError("role must be SERVER or WORKER");
  }
  if (name.empty() || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("name must be 1..", kMaxNameLength, " characters, got ", name.size()));
  }
  for (char c : name) {
    if (c <= ' ' || c > '~' || c == ',') {
      return absl::InvalidArgumentError(
          "name must be printable ASCII without spaces or commas");
    }
  }
  if (role == SERVER && address.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("server ", name, " must give the address it listens on"));
  }
  if (address.size() > 256) return absl::InvalidArgumentError("address is too long");
  auto old = by_name_.find(name);
  if (old != by_name_.end()) name_by_id_.erase(old->second.id);
  Node node;
  node.id = absl::StrFormat("%s.%08x.%d", name, incarnation_, next_id_++);
  node.name = name;
  node.role = role;
  node.address = role == SERVER ? address : "";
  node.registered = clock_->Now();
  node.last_heartbeat = node.registered;
  name_by_id_[node.id] = name;
  by_name_[name] = node;
  return node;
}

absl::StatusOr<Node> Membership::Heartbeat(const std::string& node_id) {
  auto id = name_by_id_.find(node_id);
  if (id == name_by_id_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "unknown node id '", node_id, "' (replaced, or the scheduler restarted); register again"));
  }
  Node& node = by_name_.at(id->second);
  if (!IsAlive(node)) {
    node.expired = true;
    return absl::NotFoundError(absl::StrCat("node ", node.name, " (", node_id,
                                            ") was silent too long and is dead; register again"));
  }
  node.last_heartbeat = clock_->Now();
  return node;
}

const Node* Membership::FindByName(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &it->second;
}

bool Membership::IsAlive(const Node& node) const {
  return !node.expired && clock_->Now() - node.last_heartbeat <= heartbeat_timeout_;
}

bool Membership::IsAlive(const std::string& name) const {
  const Node* node = FindByName(name);
  return node != nullptr && IsAlive(*node);
}

std::vector<std::string> Membership::ExpireSilent() {
  std::vector<std::string> expired;
  for (auto& [name, node] : by_name_) {
    if (!node.expired && !IsAlive(node)) {
      node.expired = true;
      expired.push_back(name);
    }
  }
  return expired;
}

std::vector<Node> Membership::Nodes() const {
  std::vector<Node> out;
  out.reserve(by_name_.size());
  for (const auto& [name, node] : by_name_) out.push_back(node);
  return out;
}

}  // namespace tessera::scheduler
