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

namespace {

bool IsField(uint32_t tag, int field) {
  return WireFormatLite::GetTagFieldNumber(tag) == field &&
         WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
}

// Reads the length of a length-delimited field at in's position; the field
// then spans [*at, *at + *size), within `end`.
absl::Status ReadLength(CodedInputStream* in, size_t end, absl::string_view what, size_t* at,
                        size_t* size) {
  uint32_t length = 0;
  if (!in->ReadVarint32(&length)) return Malformed(absl::StrCat("bad ", what, " length"));
  *at = static_cast<size_t>(in->CurrentPosition());
  *size = length;
  if (*size > end - *at) return Malformed(absl::StrCat(what, " runs past the end"));
  return absl::OkStatus();
}

// Copies the field `tag` (just read) from `in` to `fields`.
absl::Status KeepField(CodedInputStream* in, uint32_t tag, std::string* fields) {
  google::protobuf::io::StringOutputStream sink(fields);
  CodedOutputStream out(&sink);
  if (!WireFormatLite::SkipField(in, tag, &out)) return Malformed("bad field");
  return absl::OkStatus();
}

}  // namespace

namespace internal {

// Decodes fields from `in` up to `end` into *message, all but the payload,
// then calls `on_payload` with it: straight from the slices when it ends the
// message (or the entry), else copied aside. The stream is left at `end`.
absl::Status DecodeFields(grpc::ByteBuffer* buffer, CodedInputStream* in, size_t end,
                          google::protobuf::MessageLite* message, int payload_field,
                          google::protobuf::MessageLite* entry, int batch_field,
                          absl::FunctionRef<absl::Status(ChunkPayload&)> on_entry,
                          absl::FunctionRef<absl::Status(ChunkPayload&)> on_payload) {
  message->Clear();
  std::string fields;    // fields not yet merged into *message
  std::string deferred;  // the payload, when fields follow it
  bool have_payload = false;
  while (static_cast<size_t>(in->CurrentPosition()) < end) {
    const uint32_t tag = in->ReadTag();
    if (tag == 0) return Malformed("bad tag");
    size_t at = 0, size = 0;
    if (IsField(tag, payload_field)) {
      if (have_payload) return Malformed("two payload fields");
      have_payload = true;
      TESSERA_RETURN_IF_ERROR(ReadLength(in, end, "payload", &at, &size));
      if (at + size == end) {
        // The payload ends the message (as EncodeChunk and BatchEncoder
        // write it): the fields are complete, so the bytes can go straight
        // to their destination.
        if (!message->MergeFromString(fields)) return Malformed("bad header fields");
        ChunkPayload payload(buffer, in, at, size);
        const absl::Status st = on_payload(payload);
        // ReadTo consumed it; Hold, StreamTo or nothing left it in place.
        const size_t pos = static_cast<size_t>(in->CurrentPosition());
        if (pos < end && !in->Skip(static_cast<int>(end - pos))) {
          return Malformed("payload ends early");
        }
        return st;
      }
      deferred.resize(size);
      if (!in->ReadRaw(deferred.data(), static_cast<int>(size))) {
        return Malformed("payload ends early");
      }
      continue;
    }
    if (entry != nullptr && IsField(tag, batch_field)) {
      // An entry: the message's fields so far go in first, for on_entry.
      if (!message->MergeFromString(fields)) return Malformed("bad header fields");
      fields.clear();
      TESSERA_RETURN_IF_ERROR(ReadLength(in, end, "batch entry", &at, &size));
      const CodedInputStream::Limit limit = in->PushLimit(static_cast<int>(size));
      TESSERA_RETURN_IF_ERROR(DecodeFields(buffer, in, at + size, entry, payload_field, nullptr,
                                           0, on_entry, on_entry));
      in->PopLimit(limit);
      continue;
    }
    TESSERA_RETURN_IF_ERROR(KeepField(in, tag, &fields));
  }
  if (!message->MergeFromString(fields)) return Malformed("bad header fields");
  ChunkPayload payload(&deferred);
  return on_payload(payload);
}

}  // namespace internal

absl::Status DecodeBatchedChunk(grpc::ByteBuffer* buffer, google::protobuf::MessageLite* header,
                                int payload_field, google::protobuf::MessageLite* entry,
                                int batch_field,
                                absl::FunctionRef<absl::Status(ChunkPayload&)> on_entry,
                                absl::FunctionRef<absl::Status(ChunkPayload&)> on_payload) {
  const size_t total = buffer->Length();
  grpc::ProtoBufferReader reader(buffer);
  if (!reader.status().ok()) return Malformed(reader.status().error_message());
  CodedInputStream in(&reader);
  return internal::DecodeFields(buffer, &in, total, header, payload_field, entry, batch_field,
                                on_entry, on_payload);
}

absl::Status DecodeChunk(grpc::ByteBuffer* buffer, google::protobuf::MessageLite* header,
                         int payload_field,
                         absl::FunctionRef<absl::Status(ChunkPayload&)> on_payload) {
  return DecodeBatchedChunk(buffer, header, payload_field, nullptr, 0, on_payload, on_payload);
}

namespace {

uint32_t LengthDelimitedTag(int field) {
  return WireFormatLite::MakeTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
}

// Bytes of an entry's submessage: its fields, then its payload field.
size_t InnerBytes(int payload_field, size_t piece_bytes, size_t nbytes) {
  return piece_bytes + CodedOutputStream::VarintSize32(LengthDelimitedTag(payload_field)) +
         CodedOutputStream::VarintSize64(nbytes) + nbytes;
}

}  // namespace

size_t BatchEncoder::EntryBytes(size_t piece_bytes, size_t nbytes) const {
  const size_t inner = InnerBytes(payload_field_, piece_bytes, nbytes);
  return CodedOutputStream::VarintSize32(LengthDelimitedTag(batch_field_)) +
         CodedOutputStream::VarintSize64(inner) + inner;
}

size_t BatchEncoder::SizeWith(const google::protobuf::MessageLite& piece, size_t nbytes) const {
  return used_ + EntryBytes(piece.ByteSizeLong(), nbytes);
}

uint8_t* BatchEncoder::Reserve(size_t n) {
  if (buffer_.size() - used_ < n) {
    grpc::Slice bigger(std::max(capacity_, 2 * (used_ + n)));
    if (used_ > 0) std::memcpy(const_cast<uint8_t*>(bigger.begin()), buffer_.begin(), used_);
    buffer_ = std::move(bigger);
  }
  return const_cast<uint8_t*>(buffer_.begin()) + used_;
}

void BatchEncoder::Add(const google::protobuf::MessageLite& header,
                       const google::protobuf::MessageLite& piece, size_t nbytes,
                       absl::FunctionRef<void(char* dst)> fill) {
  if (entries_ == 0) {
    const size_t header_bytes = header.ByteSizeLong();
    header.SerializeWithCachedSizesToArray(Reserve(header_bytes));
    used_ += header_bytes;
  }
  const size_t piece_bytes = piece.ByteSizeLong();
  const size_t total = EntryBytes(piece_bytes, nbytes);
  uint8_t* p = Reserve(total);
  p = CodedOutputStream::WriteVarint32ToArray(LengthDelimitedTag(batch_field_), p);
  p = CodedOutputStream::WriteVarint64ToArray(InnerBytes(payload_field_, piece_bytes, nbytes), p);
  p = piece.SerializeWithCachedSizesToArray(p);
  p = CodedOutputStream::WriteVarint32ToArray(LengthDelimitedTag(payload_field_), p);
  p = CodedOutputStream::WriteVarint64ToArray(nbytes, p);
  fill(reinterpret_cast<char*>(p));
  used_ += total;
  ++entries_;
}

grpc::ByteBuffer BatchEncoder::Finish(const google::protobuf::MessageLite& trailer) {
  const size_t trailer_bytes = trailer.ByteSizeLong();
  if (trailer_bytes > 0) {
    trailer.SerializeWithCachedSizesToArray(Reserve(trailer_bytes));
    used_ += trailer_bytes;
  }
  grpc::Slice message = buffer_.sub(0, used_);
  Clear();
  return grpc::ByteBuffer(&message, 1);
}

void BatchEncoder::Clear() {
  buffer_ = grpc::Slice();  // gRPC may still hold the last message's bytes
  used_ = 0;
  entries_ = 0;
}

}  // namespace tessera
