#include "common/rpc/chunk_codec.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/memory.h"
#include "common/status_macros.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"

namespace tessera {
namespace {

using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;
using google::protobuf::internal::WireFormatLite;

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed chunk: ", what));
}

}  // namespace

namespace {

// A slice of `extra` + the bytes of `header` followed by the key and length
// of the bytes field `payload_field` of `nbytes` bytes; *payload points past them.
grpc::Slice HeaderSlice(const google::protobuf::MessageLite& header, int payload_field,
                        size_t nbytes, size_t extra, uint8_t** payload) {
  const size_t header_size = header.ByteSizeLong();
  const uint32_t tag =
      WireFormatLite::MakeTag(payload_field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
  const size_t prefix = header_size + CodedOutputStream::VarintSize32(tag) +
                        CodedOutputStream::VarintSize64(nbytes);
  grpc::Slice slice(prefix + extra);
  uint8_t* p = const_cast<uint8_t*>(slice.begin());
  p = header.SerializeWithCachedSizesToArray(p);
  p = CodedOutputStream::WriteVarint32ToArray(tag, p);
  *payload = CodedOutputStream::WriteVarint64ToArray(nbytes, p);
  return slice;
}

}  // namespace

grpc::ByteBuffer EncodeChunk(const google::protobuf::MessageLite& header, int payload_field,
                             size_t nbytes, absl::FunctionRef<void(char* dst)> fill) {
  uint8_t* payload = nullptr;
  grpc::Slice slice = HeaderSlice(header, payload_field, nbytes, nbytes, &payload);
  fill(reinterpret_cast<char*>(payload));
  return grpc::ByteBuffer(&slice, 1);
}

grpc::ByteBuffer MessageBuffer(const google::protobuf::MessageLite& message) {
  grpc::Slice slice(message.ByteSizeLong());
  message.SerializeWithCachedSizesToArray(const_cast<uint8_t*>(slice.begin()));
  return grpc::ByteBuffer(&slice, 1);
}

grpc::ByteBuffer EncodeChunkAround(const google::protobuf::MessageLite& header, int payload_field,
                                   grpc::Slice payload) {
  uint8_t* end = nullptr;
  grpc::Slice slices[2] = {HeaderSlice(header, payload_field, payload.size(), 0, &end),
                           std::move(payload)};
  return grpc::ByteBuffer(slices, 2);
}

grpc::ByteBuffer EncodeChunkHeaderLast(
    int payload_field, size_t max_header_bytes, size_t nbytes,
    absl::FunctionRef<const google::protobuf::MessageLite&(char* dst)> fill) {
  // Room for the longest header and the payload's key and length, then the
  // payload; the header is written right before the payload and the slice
  // handed on starts where it starts.
  const uint32_t tag =
      WireFormatLite::MakeTag(payload_field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
  const size_t room = max_header_bytes + CodedOutputStream::VarintSize32(tag) +
                      CodedOutputStream::VarintSize64(nbytes);
  grpc::Slice slice(room + nbytes);
  uint8_t* payload = const_cast<uint8_t*>(slice.begin()) + room;
  const google::protobuf::MessageLite& header = fill(reinterpret_cast<char*>(payload));
  const size_t prefix = header.ByteSizeLong() + CodedOutputStream::VarintSize32(tag) +
                        CodedOutputStream::VarintSize64(nbytes);
  if (prefix > room) {  // a caller's bound too small: correct, with one more copy
    return EncodeChunk(header, payload_field, nbytes,
                       [&](char* dst) { std::memcpy(dst, payload, nbytes); });
  }
  uint8_t* p = payload - prefix;
  p = header.SerializeWithCachedSizesToArray(p);
  p = CodedOutputStream::WriteVarint32ToArray(tag, p);
  CodedOutputStream::WriteVarint64ToArray(nbytes, p);
  grpc::Slice used = slice.sub(room - prefix, room + nbytes);
  return grpc::ByteBuffer(&used, 1);
}

namespace {

// A payload held in gRPC slices: sub-slices sharing the receive buffers.
class SliceBytes final : public HeldBytes {
 public:
  explicit SliceBytes(std::vector<grpc::Slice> slices) : slices_(std::move(slices)) {
    ends_.reserve(slices_.size());
    size_t end = 0;
    for (const grpc::Slice& s : slices_) ends_.push_back(end += s.size());
  }

  size_t size() const override { return ends_.empty() ? 0 : ends_.back(); }

  void ForEachPiece(size_t pos, size_t n,
                    absl::FunctionRef<void(const char* data, size_t len)> fn) const override {
    // The first slice ending after pos, then onward.
    size_t i = std::upper_bound(ends_.begin(), ends_.end(), pos) - ends_.begin();
    while (n > 0) {
      const size_t begin = ends_[i] - slices_[i].size();
      const size_t k = std::min(n, ends_[i] - pos);
      fn(reinterpret_cast<const char*>(slices_[i].begin()) + (pos - begin), k);
      pos += k;
      n -= k;
      ++i;
    }
  }

 private:
  std::vector<grpc::Slice> slices_;
  std::vector<size_t> ends_;  // ends_[i]: bytes in slices_[0..i]
};

}  // namespace

absl::Status ChunkPayload::Use() {
  if (used_) return absl::FailedPreconditionError("chunk payload used twice");
  used_ = true;
  return absl::OkStatus();
}

absl::Status ChunkPayload::ReadTo(char* dst) {
  if (absl::Status st = Use(); !st.ok()) return st;
  if (deferred_ != nullptr) {
    std::memcpy(dst, deferred_->data(), size_);
    return absl::OkStatus();
  }
  if (!in_->ReadRaw(dst, static_cast<int>(size_))) {
    return absl::DataLossError("chunk payload ends early");
  }
  return absl::OkStatus();
}

absl::Status ChunkPayload::StreamTo(char* dst) {
  if (absl::Status st = Use(); !st.ok()) return st;
  if (deferred_ != nullptr) {
    StreamingCopy(dst, deferred_->data(), size_);
    return absl::OkStatus();
  }
  return ForEachSlice([&dst](const grpc::Slice& s, size_t from, size_t to) {
    StreamingCopy(dst, s.begin() + from, to - from);
    dst += to - from;
  });
}

absl::StatusOr<std::shared_ptr<const HeldBytes>> ChunkPayload::Hold() {
  if (absl::Status st = Use(); !st.ok()) return st;
  if (deferred_ != nullptr) return std::make_shared<StringHeldBytes>(std::move(*deferred_));
  // Sub-slices share the memory.
  std::vector<grpc::Slice> held;
  TESSERA_RETURN_IF_ERROR(ForEachSlice([&held](const grpc::Slice& s, size_t from, size_t to) {
    held.push_back(s.sub(from, to));
  }));
  return std::make_shared<SliceBytes>(std::move(held));
}

absl::Status ChunkPayload::ForEachSlice(
    absl::FunctionRef<void(const grpc::Slice& all, size_t from, size_t to)> fn) {
  std::vector<grpc::Slice> all;
  if (!buffer_->Dump(&all).ok()) return absl::DataLossError("chunk payload unreadable");
  // The parts of the slices covering [at_, at_ + size_).
  size_t begin = 0;
  for (const grpc::Slice& s : all) {
    const size_t end = begin + s.size();
    const size_t from = std::max(begin, at_);
    const size_t to = std::min(end, at_ + size_);
    if (from < to) fn(s, from - begin, to - begin);
    begin = end;
  }
  if (begin < at_ + size_) return absl::DataLossError("chunk payload ends early");
  return absl::OkStatus();
}

absl::Status DecodeChunk(grpc::ByteBuffer* buffer, google::protobuf::MessageLite* header,
                         int payload_field,
                         absl::FunctionRef<absl::Status(ChunkPayload&)> on_payload) {
  header->Clear();
  const size_t total = buffer->Length();
  grpc::ProtoBufferReader reader(buffer);
  if (!reader.status().ok()) return Malformed(reader.status().error_message());
  CodedInputStream in(&reader);
  std::string fields;     // header fields not yet merged into *header
  std::string deferred;   // the payload, when header fields follow it
  bool have_payload = false;
  while (static_cast<size_t>(in.CurrentPosition()) < total) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) return Malformed("bad tag");
    if (WireFormatLite::GetTagFieldNumber(tag) == payload_field &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      if (have_payload) return Malformed("two payload fields");
      have_payload = true;
      uint32_t size = 0;
      if (!in.ReadVarint32(&size)) return Malformed("bad payload length");
      const size_t at = static_cast<size_t>(in.CurrentPosition());
      if (size > total - at) return Malformed("payload runs past the end");
      if (at + size == total) {
        // The payload ends the message (as EncodeChunk writes it): the header
        // is complete, so the bytes can go straight to their destination.
        if (!header->MergeFromString(fields)) return Malformed("bad header fields");
        ChunkPayload payload(buffer, &in, at, size);
        return on_payload(payload);
      }
      deferred.resize(size);
      if (!in.ReadRaw(deferred.data(), static_cast<int>(size))) {
        return Malformed("payload ends early");
      }
      continue;
    }
    google::protobuf::io::StringOutputStream sink(&fields);
    CodedOutputStream out(&sink);
    if (!WireFormatLite::SkipField(&in, tag, &out)) return Malformed("bad field");
  }
  if (!header->MergeFromString(fields)) return Malformed("bad header fields");
  ChunkPayload payload(&deferred);
  return on_payload(payload);
}

}  // namespace tessera
