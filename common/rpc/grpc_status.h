#ifndef TESSERA_COMMON_RPC_GRPC_STATUS_H_
#define TESSERA_COMMON_RPC_GRPC_STATUS_H_

// The one place where absl::Status and grpc::Status convert into each other.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace tessera {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Converts a client-side status; `context` (e.g. "pull from server 127.0.0.1:5001")
// is prepended so the message names the peer.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context = "");

// Payload chunks on every tensor stream carry at most this many bytes.
inline constexpr size_t kMaxChunkBytes = 1 << 20;
// Pieces of fewer payload bytes than this (counted as float32) travel
// batched, several to a message (PushChunk.batch, PullChunk.batch), up to
// kMaxBatchBytes a message, instead of a message each. Every message costs
// about 20 us of syscalls and wakeups on each side here, which was most of
// a push or pull of many small tensors; a batched piece costs a copy into
// the message instead of none. 256 KiB: with 64-200 KiB pieces, pulls ran
// 1.2-2x faster batched and pushes level or faster, at less CPU per byte
// (benchmarks/results/pushpull/pushpull.md, items 38 and 39).
inline constexpr size_t kBatchedPieceBytes = size_t{256} << 10;
inline constexpr size_t kMaxBatchBytes = size_t{1} << 20;
// Max gRPC message size on channels and servers: a chunk plus its header.
inline constexpr int kMaxMessageBytes = 4 << 20;

// HTTP/2 receive window per stream. gRPC's default (64 KiB, grown by BDP
// probing) makes every new push/pull stream crawl through round trips.
inline constexpr int kStreamWindowBytes = 8 << 20;

// An insecure channel to `address` with Tessera's message limits and window.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address);

// Applies Tessera's message limits and stream window to a server.
void ConfigureServerBuilder(grpc::ServerBuilder* builder);

// Sets a deadline `timeout` from now on `ctx`.
void SetTimeout(grpc::ClientContext* ctx, absl::Duration timeout);

}  // namespace tessera

#endif  // TESSERA_COMMON_RPC_GRPC_STATUS_H_
