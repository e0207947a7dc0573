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

// One message of batched pieces (PushChunk.batch, PullChunk.batch), written
// in place into one gRPC buffer: the message's own fields, then each entry as
// it comes (a `batch_field` submessage: its fields, then its `payload_field`
// payload, written by the caller straight into the buffer), then fields
// known only at the end. Protobuf reads fields in any order, so these are
// the message's ordinary bytes. One encoder serves message after message,
// each in a buffer of its own (gRPC may still hold the last one).
class BatchEncoder {
 public:
  // `capacity`: the bytes a message usually reaches (it may grow past them).
  BatchEncoder(int batch_field, int payload_field, size_t capacity)
      : batch_field_(batch_field), payload_field_(payload_field), capacity_(capacity) {}

  size_t entries() const { return entries_; }
  // Bytes of the message so far; with an entry of `piece` (payload field
  // empty) and an nbytes payload added.
  size_t size() const { return used_; }
  size_t SizeWith(const google::protobuf::MessageLite& piece, size_t nbytes) const;

  // Adds an entry: `piece`'s fields, then nbytes of payload that `fill`
  // writes into the destination it is given. The first entry of a message
  // is preceded by `header`'s fields.
  void Add(const google::protobuf::MessageLite& header,
           const google::protobuf::MessageLite& piece, size_t nbytes,
           absl::FunctionRef<void(char* dst)> fill);

  // The message: what was added, then `trailer`'s fields (an empty message
  // for none). The encoder is empty afterwards.
  grpc::ByteBuffer Finish(const google::protobuf::MessageLite& trailer);
  // Drops what was added.
  void Clear();

 private:
  // Room for n more bytes at used_ (a larger buffer when the entries'
  // headers outgrow the usual one).
  uint8_t* Reserve(size_t n);
  size_t EntryBytes(size_t piece_bytes, size_t nbytes) const;

  const int batch_field_;
  const int payload_field_;
  const size_t capacity_;
  grpc::Slice buffer_;  // the message being written; a fresh one for each
  size_t used_ = 0;
  size_t entries_ = 0;
};

class ChunkPayload;
namespace internal {
// Decodes the fields of a message (or a batch entry) from `in`, up to `end`;
// see DecodeBatchedChunk.
absl::Status DecodeFields(grpc::ByteBuffer* buffer, google::protobuf::io::CodedInputStream* in,
                          size_t end, google::protobuf::MessageLite* message, int payload_field,
                          google::protobuf::MessageLite* entry, int batch_field,
                          absl::FunctionRef<absl::Status(ChunkPayload&)> on_entry,
                          absl::FunctionRef<absl::Status(ChunkPayload&)> on_payload);
}  // namespace internal

// The payload of a chunk being decoded: `size()` bytes that ReadTo copies out
// or Hold keeps where they are.
class ChunkPayload {
 public:
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
  friend absl::Status internal::DecodeFields(
      grpc::ByteBuffer*, google::protobuf::io::CodedInputStream*, size_t,
      google::protobuf::MessageLite*, int, google::protobuf::MessageLite*, int,
      absl::FunctionRef<absl::Status(ChunkPayload&)>,
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

// As DecodeChunk, for a message that may carry batched pieces: each
// `batch_field` entry, as it is met, is decoded into *entry (cleared first;
// every field but its `payload_field`) and given to on_entry with its
// payload, which goes straight from gRPC's slices to its destination as
// DecodeChunk's does (when the payload ends the entry, as BatchEncoder
// writes it). Meanwhile *header holds the message's fields that came before
// that entry (all of them, in protobuf's usual field order). Then on_payload
// is called once, with the header complete, as DecodeChunk's.
absl::Status DecodeBatchedChunk(grpc::ByteBuffer* buffer, google::protobuf::MessageLite* header,
                                int payload_field, google::protobuf::MessageLite* entry,
                                int batch_field,
                                absl::FunctionRef<absl::Status(ChunkPayload&)> on_entry,
                                absl::FunctionRef<absl::Status(ChunkPayload&)> on_payload);

}  // namespace tessera

#endif  // TESSERA_COMMON_RPC_CHUNK_CODEC_H_
