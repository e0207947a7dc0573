#include "common/rpc/chunk_codec.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/parameter_service.pb.h"

namespace tessera {
namespace {

std::vector<float> Values(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.5f * static_cast<float>(i) - 3.25f;
  return v;
}

// The same bytes as `buffer`, cut into slices of `piece` bytes, the way
// gRPC hands over a message read from the network in several reads.
grpc::ByteBuffer Fragmented(const std::string& bytes, size_t piece) {
  std::vector<grpc::Slice> slices;
  for (size_t i = 0; i < bytes.size(); i += piece) {
    slices.emplace_back(bytes.data() + i, std::min(piece, bytes.size() - i));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// `v` as a chunk's payload, in the ways a decoder meets it: `bytes` as
// EncodeChunk writes it, and `foreign` with a header field after the payload
// (foreign field order), which the decoder copies aside first.
template <typename Chunk>
struct PayloadWires {
  explicit PayloadWires(const std::vector<float>& v) {
    const size_t nbytes = v.size() * sizeof(float);
    Chunk header;
    header.set_tensor("dense0/w");
    header.set_offset(8);
    bytes = Flatten(EncodeChunk(header, Chunk::kValuesFieldNumber, nbytes,
                                [&](char* dst) { std::memcpy(dst, v.data(), nbytes); }));
    Chunk after = header;
    after.set_values(reinterpret_cast<const char*>(v.data()), nbytes);
    after.set_encoding(COMPRESSION_NONE);
    after.set_scale(2.0f);  // a field after the payload
    foreign = after.SerializeAsString();
  }
  std::string bytes;
  std::string foreign;
};

TEST(ChunkCodecTest, EncodesExactlyWhatProtobufWouldAndDecodesIntoTheDestination) {
  const std::vector<float> v = Values(1001);
  PushChunk header;
  header.set_job_id("job");
  header.set_worker(3);
  header.set_clock(17);
  header.set_tensor("dense0/w");
  header.set_offset(4096);
  grpc::ByteBuffer encoded = EncodeChunk(header, PushChunk::kValuesFieldNumber,
                                         v.size() * sizeof(float), [&](char* dst) {
                                           std::memcpy(dst, v.data(), v.size() * sizeof(float));
                                         });
  PushChunk full = header;
  full.set_values(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  const std::string bytes = Flatten(encoded);
  EXPECT_EQ(bytes, full.SerializeAsString());

  for (size_t piece : {bytes.size(), size_t{7}, size_t{4096}}) {
    grpc::ByteBuffer in = Fragmented(bytes, piece);
    PushChunk decoded;
    std::vector<float> out(v.size(), -1.0f);
    absl::Status st = DecodeChunk(&in, &decoded, PushChunk::kValuesFieldNumber,
                                  [&](ChunkPayload& payload) {
                                    // The header is complete before the payload moves.
                                    EXPECT_EQ(decoded.tensor(), "dense0/w");
                                    EXPECT_EQ(decoded.offset(), 4096u);
                                    EXPECT_EQ(payload.size(), v.size() * sizeof(float));
                                    return payload.ReadTo(reinterpret_cast<char*>(out.data()));
                                  });
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_EQ(decoded.job_id(), "job");
    EXPECT_EQ(decoded.worker(), 3);
    EXPECT_EQ(decoded.clock(), 17);
    EXPECT_TRUE(decoded.values().empty());
    EXPECT_EQ(out, v) << "slices of " << piece << " bytes";
  }
}

TEST(ChunkCodecTest, EncodeAroundSendsTheCallersBytesWithoutACopy) {
  std::vector<float> v = Values(513);
  PullChunk header;
  header.set_tensor("emb");
  header.set_offset(77);  // fields numbered below the payload's, as protobuf orders them
  int released = 0;
  {
    grpc::Slice payload(
        v.data(), v.size() * sizeof(float), [](void* n) { ++*static_cast<int*>(n); }, &released);
    grpc::ByteBuffer encoded =
        EncodeChunkAround(header, PullChunk::kValuesFieldNumber, std::move(payload));
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(encoded.Dump(&slices).ok());
    ASSERT_EQ(slices.size(), 2u);
    // The second slice is the caller's memory itself.
    EXPECT_EQ(static_cast<const void*>(slices[1].begin()), static_cast<const void*>(v.data()));
    PullChunk full = header;
    full.set_values(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
    EXPECT_TRUE(Flatten(encoded) == full.SerializeAsString());
    EXPECT_EQ(released, 0);
  }
  EXPECT_EQ(released, 1);  // gRPC's last reference gone: the caller may reuse the bytes
}

TEST(ChunkCodecTest, HeaderLastPutsTheHeaderFirstAndFallsBackWhenItDoesNotFit) {
  const std::vector<float> v = Values(300);
  const size_t bytes = v.size() * sizeof(float);
  PullChunk header;
  for (const size_t max_header : {size_t{64}, size_t{2}}) {  // enough; too little
    grpc::ByteBuffer encoded = EncodeChunkHeaderLast(
        PullChunk::kValuesFieldNumber, max_header, bytes,
        [&](char* dst) -> const google::protobuf::MessageLite& {
          std::memcpy(dst, v.data(), bytes);
          header.set_tensor("dense1/w");  // known only now, as a pull's version is
          header.set_offset(1234);
          return header;
        });
    PullChunk full = header;
    full.set_values(reinterpret_cast<const char*>(v.data()), bytes);
    EXPECT_TRUE(Flatten(encoded) == full.SerializeAsString()) << "max_header " << max_header;
    PullChunk decoded;
    std::vector<float> out(v.size());
    ASSERT_TRUE(DecodeChunk(&encoded, &decoded, PullChunk::kValuesFieldNumber,
                            [&](ChunkPayload& p) { return p.ReadTo(reinterpret_cast<char*>(out.data())); })
                    .ok());
    EXPECT_EQ(decoded.tensor(), "dense1/w");
    EXPECT_EQ(decoded.offset(), 1234u);
    EXPECT_EQ(out, v);
  }
}

TEST(ChunkCodecTest, DecodesAPayloadThatHeaderFieldsFollow) {
  // Generated code writes fields in number order: PullChunk's values (3) come
  // before version (4) and view_clock (5).
  const std::vector<float> v = Values(33);
  PullChunk chunk;
  chunk.set_tensor("b");
  chunk.set_offset(8);
  chunk.set_values(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  chunk.set_version(5);
  chunk.set_view_clock(4);
  grpc::ByteBuffer in = Fragmented(chunk.SerializeAsString(), 5);
  PullChunk decoded;
  std::vector<float> out(v.size());
  absl::Status st = DecodeChunk(&in, &decoded, PullChunk::kValuesFieldNumber,
                                [&](ChunkPayload& payload) {
                                  EXPECT_EQ(decoded.version(), 5);
                                  EXPECT_EQ(decoded.view_clock(), 4);
                                  return payload.ReadTo(reinterpret_cast<char*>(out.data()));
                                });
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(decoded.tensor(), "b");
  EXPECT_EQ(out, v);
}

TEST(ChunkCodecTest, HoldKeepsThePayloadInTheReceiveSlicesAndCopiesAnyRangeOut) {
  const std::vector<float> v = Values(1001);
  const size_t nbytes = v.size() * sizeof(float);
  const PayloadWires<PushChunk> wires(v);
  // Whole; 7-byte slices, so floats straddle slices; and the deferred copy.
  const std::vector<std::pair<std::string, size_t>> cases = {
      {wires.bytes, wires.bytes.size()}, {wires.bytes, 7}, {wires.foreign, 5}};
  for (const auto& [wire, piece] : cases) {
    std::shared_ptr<const HeldBytes> held;
    {
      grpc::ByteBuffer in = Fragmented(wire, piece);
      PushChunk decoded;
      ASSERT_TRUE(DecodeChunk(&in, &decoded, PushChunk::kValuesFieldNumber,
                              [&](ChunkPayload& payload) -> absl::Status {
                                auto h = payload.Hold();
                                if (!h.ok()) return h.status();
                                held = *std::move(h);
                                std::string sink(payload.size(), '\0');
                                EXPECT_EQ(payload.ReadTo(sink.data()).code(),
                                          absl::StatusCode::kFailedPrecondition);
                                return absl::OkStatus();
                              })
                      .ok());
    }  // the buffer is gone; the held bytes keep its slices
    ASSERT_EQ(held->size(), nbytes) << piece;
    std::vector<float> out(v.size(), -1.0f);
    held->CopyTo(0, nbytes, reinterpret_cast<char*>(out.data()));
    EXPECT_EQ(out, v) << "slices of " << piece << " bytes";
    // A range starting and ending inside slices.
    std::vector<float> part(300);
    held->CopyTo(101 * sizeof(float), part.size() * sizeof(float),
                 reinterpret_cast<char*>(part.data()));
    EXPECT_TRUE(std::equal(part.begin(), part.end(), v.begin() + 101)) << piece;
  }
}

// StreamTo copies the payload exactly: whole, across 7-byte slices (floats
// straddling them) and 64 KiB ones, and the deferred copy of a payload that
// header fields follow; once only.
TEST(ChunkCodecTest, StreamToCopiesThePayloadLikeReadTo) {
  const std::vector<float> v = Values(70001);
  const PayloadWires<PullChunk> wires(v);
  const std::vector<std::pair<std::string, size_t>> cases = {
      {wires.bytes, wires.bytes.size()}, {wires.bytes, 7}, {wires.bytes, 65536},
      {wires.foreign, 5}};
  for (const auto& [wire, piece] : cases) {
    grpc::ByteBuffer in = Fragmented(wire, piece);
    PullChunk decoded;
    // One float past each end, to see that nothing else is written.
    std::vector<float> out(v.size() + 2, -1.0f);
    ASSERT_TRUE(DecodeChunk(&in, &decoded, PullChunk::kValuesFieldNumber,
                            [&](ChunkPayload& payload) -> absl::Status {
                              absl::Status st =
                                  payload.StreamTo(reinterpret_cast<char*>(out.data() + 1));
                              EXPECT_EQ(payload.StreamTo(reinterpret_cast<char*>(out.data() + 1))
                                            .code(),
                                        absl::StatusCode::kFailedPrecondition);
                              return st;
                            })
                    .ok())
        << piece;
    EXPECT_EQ(decoded.tensor(), "dense0/w");
    EXPECT_EQ(out.front(), -1.0f);
    EXPECT_EQ(out.back(), -1.0f);
    EXPECT_TRUE(std::equal(v.begin(), v.end(), out.begin() + 1)) << "slices of " << piece;
  }
}

TEST(ChunkCodecTest, ANoPayloadChunkStillReachesTheCallback) {
  PullChunk chunk;
  chunk.set_tensor("t");
  grpc::ByteBuffer in = Fragmented(chunk.SerializeAsString(), 64);
  PullChunk decoded;
  size_t seen = 99;
  ASSERT_TRUE(DecodeChunk(&in, &decoded, PullChunk::kValuesFieldNumber, [&](ChunkPayload& p) {
                seen = p.size();
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ(seen, 0u);
  EXPECT_EQ(decoded.tensor(), "t");
}

TEST(ChunkCodecTest, GarbageIsInvalidArgumentAndCallbackErrorsPassThrough) {
  const std::vector<float> v = Values(16);
  PullChunk chunk;
  chunk.set_tensor("t");
  chunk.set_values(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  const std::string good = chunk.SerializeAsString();
  auto decode = [](const std::string& bytes) {
    grpc::ByteBuffer in = Fragmented(bytes, 3);
    PullChunk h;
    return DecodeChunk(&in, &h, PullChunk::kValuesFieldNumber, [](ChunkPayload& p) {
      std::string sink(p.size(), '\0');
      return p.ReadTo(sink.data());
    });
  };
  EXPECT_TRUE(decode(good).ok());
  EXPECT_EQ(decode(good.substr(0, good.size() - 5)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decode(good + good).code(), absl::StatusCode::kInvalidArgument);  // two payloads
  EXPECT_EQ(decode(std::string("\xff\xff\xff", 3)).code(), absl::StatusCode::kInvalidArgument);

  grpc::ByteBuffer in = Fragmented(good, 100);
  PullChunk h;
  EXPECT_EQ(DecodeChunk(&in, &h, PullChunk::kValuesFieldNumber,
                        [](ChunkPayload&) { return absl::NotFoundError("no such tensor"); })
                .code(),
            absl::StatusCode::kNotFound);
}

// A batch of pieces (PushChunk.batch) written by BatchEncoder: the message's
// fields first, the entries, then a trailer field.
struct BatchWire {
  BatchWire() {
    BatchEncoder encoder(PushChunk::kBatchFieldNumber, PushChunk::kValuesFieldNumber, 64);
    PushChunk header;
    header.set_job_id("job");
    header.set_clock(9);
    for (int i = 0; i < 3; ++i) {
      pieces.push_back(Values(40 + 300 * i));
      PushChunk entry;
      entry.set_tensor(absl::StrCat("t", i));
      entry.set_offset(7 * i);
      const size_t nbytes = pieces.back().size() * sizeof(float);
      expected_size = encoder.SizeWith(entry, nbytes) + (i == 0 ? header.ByteSizeLong() : 0);
      encoder.Add(header, entry, nbytes,
                  [&](char* dst) { std::memcpy(dst, pieces.back().data(), nbytes); });
      EXPECT_EQ(encoder.size(), expected_size);  // grown past the 64-byte capacity
    }
    EXPECT_EQ(encoder.entries(), 3u);
    PushChunk trailer;
    trailer.set_end_of_push(true);
    bytes = Flatten(encoder.Finish(trailer));
    EXPECT_EQ(encoder.entries(), 0u);
  }
  std::vector<std::vector<float>> pieces;
  size_t expected_size = 0;
  std::string bytes;
};

TEST(ChunkCodecTest, ABatchIsTheMessagesOwnProtobufEncoding) {
  const BatchWire wire;
  PushChunk parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire.bytes));
  EXPECT_EQ(parsed.job_id(), "job");
  EXPECT_EQ(parsed.clock(), 9);
  EXPECT_TRUE(parsed.end_of_push());
  ASSERT_EQ(parsed.batch_size(), 3);
  for (int i = 0; i < 3; ++i) {
    const PushChunk& e = parsed.batch(i);
    EXPECT_EQ(e.tensor(), absl::StrCat("t", i));
    EXPECT_EQ(e.offset(), 7u * i);
    EXPECT_TRUE(e.job_id().empty());
    ASSERT_EQ(e.values().size(), wire.pieces[i].size() * sizeof(float));
    EXPECT_EQ(std::memcmp(e.values().data(), wire.pieces[i].data(), e.values().size()), 0);
  }
}

// Each entry reaches on_entry with its own fields and the message's so far,
// its payload straight from the slices (ReadTo, Hold, or left unread), in
// slices of any size; then the message's own callback with every field. A
// generated-code encoding (payloads before later fields) decodes the same.
TEST(ChunkCodecTest, DecodesEachBatchEntryAsItComes) {
  const BatchWire wire;
  PushChunk generated;
  ASSERT_TRUE(generated.ParseFromString(wire.bytes));
  generated.mutable_batch(1)->set_scale(2.0f);  // a field after its payload
  for (const auto& [bytes, piece] :
       std::vector<std::pair<std::string, size_t>>{{wire.bytes, wire.bytes.size()},
                                                    {wire.bytes, 5},
                                                    {wire.bytes, 1000},
                                                    {generated.SerializeAsString(), 7}}) {
    grpc::ByteBuffer in = Fragmented(bytes, piece);
    // BatchEncoder's trailer comes last; generated code writes field 12
    // before the entries (14).
    const bool end_first = bytes != wire.bytes;
    PushChunk header, entry;
    int seen = 0;
    std::vector<std::vector<float>> out;
    std::shared_ptr<const HeldBytes> held;
    bool whole = false;
    const absl::Status st = DecodeBatchedChunk(
        &in, &header, PushChunk::kValuesFieldNumber, &entry, PushChunk::kBatchFieldNumber,
        [&](ChunkPayload& payload) -> absl::Status {
          EXPECT_EQ(header.job_id(), "job");  // the message's fields come first
          EXPECT_EQ(header.end_of_push(), end_first);
          EXPECT_EQ(entry.tensor(), absl::StrCat("t", seen));
          EXPECT_EQ(entry.offset(), 7u * seen);
          EXPECT_TRUE(entry.values().empty());
          out.emplace_back(payload.size() / sizeof(float));
          const int i = seen++;
          if (i == 0) return payload.ReadTo(reinterpret_cast<char*>(out.back().data()));
          if (i == 1) {
            auto h = payload.Hold();
            if (!h.ok()) return h.status();
            held = *std::move(h);
            held->CopyTo(0, held->size(), reinterpret_cast<char*>(out.back().data()));
          }
          return absl::OkStatus();  // the third is skipped
        },
        [&](ChunkPayload& payload) {
          whole = header.end_of_push() && payload.size() == 0;
          return absl::OkStatus();
        });
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_EQ(seen, 3);
    EXPECT_TRUE(whole);
    EXPECT_EQ(out[0], wire.pieces[0]) << piece;
    EXPECT_EQ(out[1], wire.pieces[1]) << piece;
    EXPECT_EQ(out[2].size(), wire.pieces[2].size());
  }
  // Truncated inside an entry, or an entry longer than the message.
  for (const std::string& bad :
       {wire.bytes.substr(0, wire.bytes.size() - 200), wire.bytes.substr(0, 12)}) {
    grpc::ByteBuffer in = Fragmented(bad, 9);
    PushChunk header, entry;
    auto read = [](ChunkPayload& p) {
      std::string sink(p.size(), '\0');
      return p.ReadTo(sink.data());
    };
    EXPECT_EQ(DecodeBatchedChunk(&in, &header, PushChunk::kValuesFieldNumber, &entry,
                                 PushChunk::kBatchFieldNumber, read, read)
                  .code(),
              absl::StatusCode::kInvalidArgument)
        << bad.size();
  }
}

// Every prefix of a batch, and every single-byte corruption of it, decodes to
// a status (OK for a corruption that is still a valid message), never past
// the buffer: checked under AddressSanitizer too.
TEST(ChunkCodecTest, TruncatedOrCorruptedBatchesAreErrorsNotCrashes) {
  const BatchWire wire;
  auto decode = [](const std::string& bytes) {
    grpc::ByteBuffer in = Fragmented(bytes, 13);
    PushChunk header, entry;
    auto read = [](ChunkPayload& p) {
      std::string sink(p.size(), '\0');
      return p.ReadTo(sink.data());
    };
    return DecodeBatchedChunk(&in, &header, PushChunk::kValuesFieldNumber, &entry,
                              PushChunk::kBatchFieldNumber, read, read);
  };
  ASSERT_TRUE(decode(wire.bytes).ok());
  int refused = 0;
  for (size_t n = 0; n < wire.bytes.size(); ++n) {
    const absl::Status st = decode(wire.bytes.substr(0, n));
    if (!st.ok()) {
      ++refused;
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << n << ": " << st;
    }
  }
  EXPECT_GT(refused, 0);
  for (size_t i = 0; i < wire.bytes.size(); i += 7) {
    for (const char flip : {'\x80', '\xff', '\x01'}) {
      std::string bad = wire.bytes;
      bad[i] = static_cast<char>(bad[i] ^ flip);
      const absl::Status st = decode(bad);
      EXPECT_TRUE(st.ok() || st.code() == absl::StatusCode::kInvalidArgument ||
                  st.code() == absl::StatusCode::kDataLoss)
          << i << ": " << st;
    }
  }
}

}  // namespace
}  // namespace tessera
