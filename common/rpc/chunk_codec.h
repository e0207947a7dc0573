#ifndef TESSERA_COMMON_RPC_CHUNK_CODEC_H_
#define TESSERA_COMMON_RPC_CHUNK_CODEC_H_

// Tensor chunks (PushChunk, PullChunk) to and from gRPC byte buffers without
// passing the payload through a protobuf string. The bytes on the wire are
// exactly the message's protobuf encoding, so any gRPC peer that uses the
// generated classes reads and writes the same streams; only the copies differ:
//   encode: header fields, then the payload written once, in place, into the
//           gRPC-owned buffer (protobuf would copy it into a string, then
//           serialize the string: two copies);
//   decode: the payload copied once, from gRPC's receive slices straight into
//           its destination (parameter or staging memory), or not at all:
//           kept in those slices until it is used (ChunkPayload::Hold).

#include <cstddef>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/held_bytes.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"

namespace tessera {

// A whole message (a request, a response, an end-of-push marker, a batch of
// small pieces) as one byte buffer, serialized straight into it, for the
// calls that run on raw byte buffers.
grpc::ByteBuffer MessageBuffer(const google::protobuf::MessageLite& message);

// Encodes `header` (whose payload field must be empty) followed by the bytes
// field `payload_field` of `nbytes` bytes, which `fill` writes into the
// destination it is given. One allocation.
grpc::ByteBuffer EncodeChunk(const google::protobuf::MessageLite& header, int payload_field,
                             size_t nbytes, absl::FunctionRef<void(char* dst)> fill);

// As EncodeChunk, but the payload is not copied: `payload` (typically a
// grpc::Slice over memory the caller keeps alive until gRPC releases the
// slice) follows a slice holding the header.
grpc::ByteBuffer EncodeChunkAround(const google::protobuf::MessageLite& header, int payload_field,
                                   grpc::Slice payload);

// As EncodeChunk, for a header only known once the payload is written (a
// pulled piece's version is read while it is copied): `fill` writes the
// payload and returns the header, whose encoding must not exceed
// `max_header_bytes`. Still one allocation, and the header goes first.
grpc::ByteBuffer EncodeChunkHeaderLast(
    int payload_field, size_t max_header_bytes, size_t nbytes,
    absl::FunctionRef<const google::protobuf::MessageLite&(char* dst)> fill);

// The payload of a chunk being decoded: `size()` bytes that ReadTo copies out
// or Hold keeps where they are.
class ChunkPayload {
 public:
  // A payload already decoded into a string (a batch entry's values, which
  // protobuf parsed with its message); ReadTo copies and Hold takes it.
  static ChunkPayload Of(std::string* bytes) { return ChunkPayload(bytes); }

  size_t size() const { return size_; }
  // Copies the payload to dst (size() bytes). DATA_LOSS if the buffer ends
  // early. At most once, and not after Hold.
  absl::Status ReadTo(char* dst);
  // As ReadTo, with StreamingCopy (common/memory.h): for a large destination
  // that is not read again soon.
  absl::Status StreamTo(char* dst);
  // The payload without a copy: the returned bytes share gRPC's receive
  // slices (or the decoder's copy of a payload that came before header
  // fields), which stay alive as long as they do. At most once, and not
  // after ReadTo.
  absl::StatusOr<std::shared_ptr<const HeldBytes>> Hold();

 private:
  friend absl::Status DecodeChunk(grpc::ByteBuffer*, google::protobuf::MessageLite*, int,
                                  absl::FunctionRef<absl::Status(ChunkPayload&)>);
  // The payload at bytes [at, at + size) of `buffer`, the last field, next in `in`.
  ChunkPayload(grpc::ByteBuffer* buffer, google::protobuf::io::CodedInputStream* in, size_t at,
               size_t size)
      : buffer_(buffer), in_(in), at_(at), size_(size) {}
  // The payload copied aside while the fields after it were read.
  explicit ChunkPayload(std::string* deferred) : deferred_(deferred), size_(deferred->size()) {}

  absl::Status Use();  // FAILED_PRECONDITION on a second use
  // Calls fn on each of the received slices' parts that make up the payload,
  // in order (not for a deferred payload). DATA_LOSS if they end early.
  absl::Status ForEachSlice(absl::FunctionRef<void(const grpc::Slice& all, size_t from,
                                                   size_t to)> fn);

  grpc::ByteBuffer* buffer_ = nullptr;
  google::protobuf::io::CodedInputStream* in_ = nullptr;
  size_t at_ = 0;
  std::string* deferred_ = nullptr;
  size_t size_;
  bool used_ = false;
};

// Decodes a chunk from `buffer`: every field but `payload_field` into
// *header (cleared first), then calls `on_payload` once with the header
// complete and the payload not yet copied, so the callee can check the header
// and choose where the bytes go (a chunk without payload gives size 0). If
// on_payload calls neither ReadTo nor Hold, the payload is skipped. `buffer`
// may be reused afterwards: held bytes keep references of their own. Returns
// the first error: INVALID_ARGUMENT for bytes that are not such a message
// (truncated, two payload fields), or what on_payload returns.
absl::Status DecodeChunk(grpc::ByteBuffer* buffer, google::protobuf::MessageLite* header,
                         int payload_field,
                         absl::FunctionRef<absl::Status(ChunkPayload&)> on_payload);

}  // namespace tessera

#endif  // TESSERA_COMMON_RPC_CHUNK_CODEC_H_
