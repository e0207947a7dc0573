#ifndef TESSERA_SCHEDULER_MEMBERSHIP_H_
#define TESSERA_SCHEDULER_MEMBERSHIP_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "proto/scheduler_service.pb.h"

namespace tessera::scheduler {

// One registered process.
struct Node {
  std::string id;    // changes with every registration
  std::string name;  // stable across restarts of the process, e.g. "worker-0"
  NodeRole role = NODE_ROLE_UNSPECIFIED;
  std::string address;  // servers: host:port they listen on; empty for workers
  absl::Time registered;
  absl::Time last_heartbeat;
  // Set once the node has been silent for longer than the heartbeat timeout.
  // An expired node stays listed (alive = false) but its id is no longer
  // accepted: it must register again.
  bool expired = false;
};

// The nodes of the cluster and their liveness. A node is alive while its last
// registration or heartbeat is at most `heartbeat_timeout` old; once it has
// been seen dead it stays dead until it registers again, so a late heartbeat
// cannot silently revive a node whose tasks were already given up.
// Thread-compatible: the Scheduler calls it under its own lock.
class Membership {
 public:
  // `clock` must outlive the Membership.
  Membership(Clock* clock, absl::Duration heartbeat_timeout);

  // Adds a node, replacing any node of the same name (the replacement gets a
  // new id; the old id is forgotten). INVALID_ARGUMENT when the role is not
  // SERVER/WORKER, the name is empty, too long or not printable, or a server
  // gives no address.
  absl::StatusOr<Node> Register(NodeRole role, const std::string& name,
                                const std::string& address);

  // Records a heartbeat. NOT_FOUND (asking the node to register again) when
  // the id is unknown — replaced, from before a scheduler restart — or the
  // node has already expired.
  absl::StatusOr<Node> Heartbeat(const std::string& node_id);

  // nullptr when there is no node of that name. The pointer is valid until
  // the next Register().
  const Node* FindByName(const std::string& name) const;

  // Alive: registered, not expired, and heard from within the timeout.
  bool IsAlive(const Node& node) const;
  bool IsAlive(const std::string& name) const;

  // Marks every node silent for longer than the timeout as expired and
  // returns the names of the nodes that expired in this call.
  std::vector<std::string> ExpireSilent();

  // Every node, sorted by name.
  std::vector<Node> Nodes() const;

  absl::Duration heartbeat_timeout() const { return heartbeat_timeout_; }

 private:
  Clock* const clock_;
  const absl::Duration heartbeat_timeout_;
  // Distinguishes this scheduler process's node ids from those handed out
  // before a restart, so that a stale id can never match a new node.
  const uint32_t incarnation_;
  int64_t next_id_ = 1;
  std::map<std::string, Node> by_name_;
  std::map<std::string, std::string> name_by_id_;
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_MEMBERSHIP_H_
