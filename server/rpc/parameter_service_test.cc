#include "server/rpc/parameter_service.h"

#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/initializer.h"
#include "common/rpc/grpc_status.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "proto/parameter_service.grpc.pb.h"
#include "server/rpc/parameter_server.h"

namespace tessera::server {
namespace {

using ::testing::HasSubstr;

// Larger than one chunk so pulls and pushes span several.
constexpr uint64_t kSize = (kMaxChunkBytes / 4) * 2 + 1000;

TensorSpec Tensor() {
  TensorSpec t;
  t.set_name("dense0/w");
  t.set_size(kSize);
  t.set_init(TensorSpec::NORMAL);
  t.set_scale(0.1f);
  return t;
}

std::vector<float> Initial() {
  std::vector<float> v(kSize);
  InitializeSlice(Tensor(), 3, Range{0, kSize}, absl::MakeSpan(v));
  return v;
}

class ParameterServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start("127.0.0.1", 0).ok());
    ASSERT_GT(server_.port(), 0);
    stub_ = ParameterService::NewStub(MakeChannel(absl::StrCat("127.0.0.1:", server_.port())));
    CreateJobRequest req;
    req.set_job_id("j");
    req.mutable_spec()->set_mode(SYNC);
    req.mutable_spec()->set_seed(3);
    req.mutable_spec()->mutable_optimizer()->set_kind(OptimizerSpec::SGD);
    req.mutable_spec()->mutable_optimizer()->set_learning_rate(0.5f);
    *req.add_tensors() = Tensor();
    TensorSlice* slice = req.add_slices();
    slice->set_tensor("dense0/w");
    slice->set_begin(0);
    slice->set_end(kSize);
    req.add_live_workers(0);
    req.add_live_workers(1);
    CreateJobResponse resp;
    grpc::ClientContext ctx;
    SetTimeout(&ctx, absl::Seconds(10));
    ASSERT_TRUE(stub_->CreateJob(&ctx, req, &resp).ok());
  }

  // Pushes `chunks` in one stream.
  grpc::Status PushChunks(const std::vector<PushChunk>& chunks) {
    grpc::ClientContext ctx;
    SetTimeout(&ctx, absl::Seconds(30));
    PushResponse resp;
    auto writer = stub_->Push(&ctx, &resp);
    for (const PushChunk& c : chunks) {
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  static PushChunk Chunk(const std::string& job, int worker, int64_t clock,
                         const std::string& tensor, uint64_t offset, const float* values,
                         size_t n) {
    PushChunk c;
    c.set_job_id(job);
    c.set_worker(worker);
    c.set_clock(clock);
    c.set_tensor(tensor);
    c.set_offset(offset);
    c.set_values(reinterpret_cast<const char*>(values), n * sizeof(float));
    return c;
  }

  // The whole gradient `g` in chunks of kMaxChunkBytes.
  grpc::Status PushAll(int worker, int64_t clock, const std::vector<float>& g) {
    std::vector<PushChunk> chunks;
    const size_t per = kMaxChunkBytes / 4;
    for (size_t i = 0; i < g.size(); i += per) {
      chunks.push_back(
          Chunk("j", worker, clock, "dense0/w", i, g.data() + i, std::min(per, g.size() - i)));
    }
    return PushChunks(chunks);
  }

  grpc::Status PullAll(int worker, int64_t clock, std::vector<float>* values,
                       int64_t* version, int* chunks) {
    PullRequest req;
    req.set_job_id("j");
    req.set_worker(worker);
    req.set_clock(clock);
    TensorSlice* s = req.add_slices();
    s->set_tensor("dense0/w");
    s->set_begin(0);
    s->set_end(kSize);
    grpc::ClientContext ctx;
    SetTimeout(&ctx, absl::Seconds(30));
    auto reader = stub_->Pull(&ctx, req);
    values->assign(kSize, 0.0f);
    *chunks = 0;
    PullChunk c;
    while (reader->Read(&c)) {
      EXPECT_LE(c.values().size(), kMaxChunkBytes);
      EXPECT_EQ(c.tensor(), "dense0/w");
      std::memcpy(values->data() + c.offset(), c.values().data(), c.values().size());
      *version = c.version();
      ++*chunks;
    }
    return reader->Finish();
  }

  // No push was applied: a pull at clock 0 reads version 0 and the initial
  // values.
  void ExpectNothingApplied() {
    std::vector<float> values;
    int64_t version = -1;
    int chunks = 0;
    ASSERT_TRUE(PullAll(0, 0, &values, &version, &chunks).ok());
    EXPECT_EQ(version, 0);
    EXPECT_TRUE(values == Initial());
  }

  ParameterServer server_;
  std::unique_ptr<ParameterService::Stub> stub_;
};

TEST_F(ParameterServiceTest, TwoWorkersPushAndPullOverARealChannel) {
  std::vector<std::vector<float>> grads(2, std::vector<float>(kSize));
  for (uint64_t i = 0; i < kSize; ++i) {
    grads[0][i] = 0.001f * static_cast<float>(i % 97);
    grads[1][i] = -0.002f * static_cast<float>(i % 13);
  }
  std::vector<std::vector<float>> pulled(2);
  std::vector<int64_t> versions(2, -1);
  std::vector<grpc::Status> errors(2);
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] {
      int chunks = 0;
      grpc::Status s = PullAll(w, 0, &pulled[w], &versions[w], &chunks);
      if (s.ok() && pulled[w] != Initial()) s = grpc::Status(grpc::StatusCode::INTERNAL, "init");
      if (s.ok()) s = PushAll(w, 0, grads[w]);
      if (s.ok()) s = PullAll(w, 1, &pulled[w], &versions[w], &chunks);  // waits for the other
      const int want_chunks =
          static_cast<int>((kSize * sizeof(float) + kPullPieceBytes - 1) / kPullPieceBytes);
      if (s.ok() && chunks != want_chunks) {
        s = grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat(chunks, " chunks, want ",
                                                                  want_chunks));
      }
      errors[w] = s;
    });
  }
  for (auto& t : workers) t.join();
  std::vector<float> want = Initial();
  for (uint64_t i = 0; i < kSize; ++i) want[i] -= 0.5f * ((grads[0][i] + grads[1][i]) / 2.0f);
  for (int w = 0; w < 2; ++w) {
    ASSERT_TRUE(errors[w].ok()) << w << ": " << errors[w].error_message();
    EXPECT_EQ(versions[w], 1);
    EXPECT_TRUE(pulled[w] == want) << "worker " << w;
  }

  ServerStatsRequest req;
  req.set_job_id("j");
  ServerStatsResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Stats(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.pushes(), 2u);
  EXPECT_EQ(resp.pulls(), 4u);
  EXPECT_EQ(resp.min_version(), 1);
}

TEST_F(ParameterServiceTest, BadPushesGetAClearStatus) {
  const std::vector<float> g(kSize, 1.0f);
  struct Case {
    std::string name;
    std::vector<PushChunk> chunks;
    grpc::StatusCode code;
    std::string text;
  };
  PushChunk odd = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 2);
  odd.mutable_values()->resize(7);
  PushChunk switched = Chunk("j", 1, 0, "dense0/w", 10, g.data(), 10);
  // Compressed chunks whose payload cannot be what the header says.
  PushChunk half_odd = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 2);
  half_odd.set_encoding(COMPRESSION_FP16);
  half_odd.mutable_values()->resize(5);
  PushChunk topk_past = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 2);
  topk_past.set_encoding(COMPRESSION_TOPK);
  topk_past.set_elements(100);
  const uint32_t index = 100;
  topk_past.mutable_values()->replace(0, 4, reinterpret_cast<const char*>(&index), 4);
  PushChunk bits_short = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 1);
  bits_short.set_encoding(COMPRESSION_ONEBIT);
  bits_short.set_elements(1000);
  bits_short.set_scale(1);
  PushChunk unknown = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 2);
  unknown.set_encoding(static_cast<Compression>(77));
  PushChunk no_elements = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 2);
  no_elements.set_encoding(COMPRESSION_TOPK);
  PushChunk many_parts = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 2);
  many_parts.set_parts(kMaxPushParts + 1);
  PushChunk part_a = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 2);
  part_a.set_parts(2);
  part_a.set_push_id(9);
  PushChunk marker;
  marker.set_end_of_push(true);
  PushChunk part_b = Chunk("j", 0, 0, "dense0/w", 2, g.data(), 2);
  part_b.set_parts(3);
  part_b.set_push_id(9);
  // Batches (PushChunk.batch) whose entries are not pieces of the push.
  PushChunk entry_job = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 10);
  *entry_job.add_batch() = Chunk("j", 0, 0, "dense0/w", 10, g.data(), 10);
  PushChunk entry_nested = Chunk("j", 0, 0, "dense0/w", 0, g.data(), 10);
  PushChunk* nested = entry_nested.add_batch();
  nested->set_tensor("dense0/w");
  nested->set_offset(10);
  nested->add_batch()->set_tensor("dense0/w");
  PushChunk entry_unnamed = Chunk("j", 0, 0, "", 0, g.data(), 0);
  entry_unnamed.add_batch()->set_offset(5);
  PushChunk entry_past = Chunk("j", 0, 0, "", 0, g.data(), 0);
  PushChunk* past = entry_past.add_batch();
  past->set_tensor("dense0/w");
  past->set_offset(kSize - 5);
  past->set_values(reinterpret_cast<const char*>(g.data()), 10 * sizeof(float));
  PushChunk batch_values = Chunk("j", 0, 0, "", 0, g.data(), 4);
  PushChunk* fine = batch_values.add_batch();
  fine->set_tensor("dense0/w");
  fine->set_values(reinterpret_cast<const char*>(g.data()), 10 * sizeof(float));
  const std::vector<Case> cases = {
      {"fp16 odd bytes", {half_odd}, grpc::StatusCode::INVALID_ARGUMENT, "not a valid payload"},
      {"topk index past the chunk", {topk_past}, grpc::StatusCode::INVALID_ARGUMENT,
       "not a valid payload of 100"},
      {"onebit too few bits", {bits_short}, grpc::StatusCode::INVALID_ARGUMENT, "onebit"},
      {"unknown encoding", {unknown}, grpc::StatusCode::INVALID_ARGUMENT, "unknown encoding"},
      {"topk without elements", {no_elements}, grpc::StatusCode::INVALID_ARGUMENT,
       "0 elements"},
      {"wrong size", {Chunk("j", 0, 0, "dense0/w", 0, g.data(), 10)},
       grpc::StatusCode::INVALID_ARGUMENT, "covered 10 of"},
      {"past the end", {Chunk("j", 0, 0, "dense0/w", kSize - 5, g.data(), 10)},
       grpc::StatusCode::INVALID_ARGUMENT, "dense0/w"},
      {"unknown tensor", {Chunk("j", 0, 0, "nope/w", 0, g.data(), 10)},
       grpc::StatusCode::NOT_FOUND, "'nope/w'"},
      {"unknown job", {Chunk("nojob", 0, 0, "dense0/w", 0, g.data(), 10)},
       grpc::StatusCode::NOT_FOUND, "'nojob'"},
      {"odd bytes", {odd}, grpc::StatusCode::INVALID_ARGUMENT, "7 bytes"},
      {"header changes", {Chunk("j", 0, 0, "dense0/w", 0, g.data(), 10), switched},
       grpc::StatusCode::INVALID_ARGUMENT, "worker 1"},
      {"stale clock", {Chunk("j", 0, 4, "dense0/w", 0, g.data(), 10)},
       grpc::StatusCode::FAILED_PRECONDITION, "clock 4"},
      {"no chunks", {}, grpc::StatusCode::INVALID_ARGUMENT, "no chunks"},
      {"no job id", {Chunk("", 0, 0, "dense0/w", 0, g.data(), 10)},
       grpc::StatusCode::INVALID_ARGUMENT, "job_id"},
      {"too many parts", {many_parts}, grpc::StatusCode::INVALID_ARGUMENT, "parts"},
      {"parts change", {part_a, part_b}, grpc::StatusCode::INVALID_ARGUMENT, "in 3 parts"},
      {"end_of_push on Push", {Chunk("j", 0, 0, "dense0/w", 0, g.data(), 10), marker},
       grpc::StatusCode::INVALID_ARGUMENT, "PushStream"},
      {"batch entry with a job", {entry_job}, grpc::StatusCode::INVALID_ARGUMENT,
       "batch entry 0 (tensor 'dense0/w') sets fields of the push"},
      {"batch entry with a batch", {entry_nested}, grpc::StatusCode::INVALID_ARGUMENT,
       "sets fields of the push"},
      {"batch entry without a tensor", {entry_unnamed}, grpc::StatusCode::INVALID_ARGUMENT,
       "batch entry 0 names no tensor"},
      {"batch entry past the end", {entry_past}, grpc::StatusCode::INVALID_ARGUMENT,
       "dense0/w"},
      {"batch with values but no tensor", {batch_values}, grpc::StatusCode::INVALID_ARGUMENT,
       "values but no tensor"},
  };
  for (const Case& c : cases) {
    grpc::Status s = PushChunks(c.chunks);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.text)) << c.name;
  }
  ExpectNothingApplied();
}

// A push split over two streams, as a client with two channels sends it.
TEST_F(ParameterServiceTest, APushInTwoStreamsAppliesOnceBothEndWhole) {
  std::vector<float> g0(kSize), g1(kSize, 0.5f);
  for (uint64_t i = 0; i < kSize; ++i) g0[i] = 0.001f * static_cast<float>(i % 1000);
  const uint64_t half = kSize / 2;
  // Elements [begin, end) of worker 0's gradient in chunks of half a chunk
  // limit, marked as one of 2 parts of push `push_id`.
  auto part = [&](int64_t clock, uint64_t push_id, uint64_t begin, uint64_t end) {
    std::vector<PushChunk> chunks;
    for (uint64_t i = begin; i < end; i += kMaxChunkBytes / 8) {
      const uint64_t n = std::min<uint64_t>(kMaxChunkBytes / 8, end - i);
      chunks.push_back(Chunk("j", 0, clock, "dense0/w", i, g0.data() + i, n));
      chunks.back().set_parts(2);
      chunks.back().set_push_id(push_id);
    }
    return chunks;
  };
  // First try: the second stream carries a bad chunk, so nothing of the push
  // is applied, though the first stream ended cleanly.
  grpc::Status st = PushChunks(part(0, 1, 0, half));
  ASSERT_TRUE(st.ok()) << st.error_message();
  std::vector<PushChunk> bad = part(0, 1, half, kSize);
  bad.back().mutable_values()->resize(6);
  EXPECT_EQ(PushChunks(bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Second try (a new push id); worker 1 pushes in one stream meanwhile.
  ASSERT_TRUE(PushChunks(part(0, 2, half, kSize)).ok());
  ASSERT_TRUE(PushAll(1, 0, g1).ok());
  std::vector<float> values;
  int64_t version = -1;
  int chunks = 0;
  ASSERT_TRUE(PullAll(1, 0, &values, &version, &chunks).ok());
  EXPECT_EQ(version, 0);  // SYNC: still waiting for worker 0's whole push
  ASSERT_TRUE(PushChunks(part(0, 2, 0, half)).ok());
  ASSERT_TRUE(PullAll(0, 1, &values, &version, &chunks).ok());
  EXPECT_EQ(version, 1);
  std::vector<float> want = Initial();
  for (uint64_t i = 0; i < kSize; ++i) want[i] -= 0.5f * ((g0[i] + g1[i]) / 2.0f);
  EXPECT_TRUE(values == want);
}

// The PushStream's next read fails: the server ended it INVALID_ARGUMENT,
// saying `text`.
void ExpectPushRefused(grpc::ClientReaderWriter<PushChunk, PushResponse>* stream,
                       const std::string& text) {
  PushResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  const grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr(text));
}

// Several pushes on one long-lived PushStream, each ended by a bare marker or
// by its last chunk, and answered; a refused push ends the stream with its
// status.
TEST_F(ParameterServiceTest, PushStreamCarriesPushAfterPush) {
  std::vector<float> g(kSize);
  for (uint64_t i = 0; i < kSize; ++i) g[i] = 0.001f * static_cast<float>(i % 777);
  const size_t per = kMaxChunkBytes / 4;
  grpc::ClientContext ctx;
  SetTimeout(&ctx, absl::Seconds(30));
  auto stream = stub_->PushStream(&ctx);
  PushChunk marker;
  marker.set_end_of_push(true);
  // Workers 0 and 1 in turn on one stream (SYNC: both push each clock);
  // worker 0 ends its pushes with a marker, worker 1 with its last chunk.
  for (int64_t clock = 0; clock < 2; ++clock) {
    for (int w = 0; w < 2; ++w) {
      for (size_t i = 0; i < kSize; i += per) {
        PushChunk chunk =
            Chunk("j", w, clock, "dense0/w", i, g.data() + i, std::min(per, kSize - i));
        chunk.set_end_of_push(w == 1 && i + per >= kSize);
        ASSERT_TRUE(stream->Write(chunk));
      }
      if (w == 0) {
        ASSERT_TRUE(stream->Write(marker));
      }
      PushResponse resp;
      ASSERT_TRUE(stream->Read(&resp)) << "clock " << clock << " worker " << w;
      EXPECT_EQ(resp.elements(), kSize);
    }
  }
  // A marker with no push before it is refused, and ends the stream.
  ASSERT_TRUE(stream->Write(marker));
  ExpectPushRefused(stream.get(), "no chunks");

  std::vector<float> values;
  int64_t version = -1;
  int chunks = 0;
  ASSERT_TRUE(PullAll(0, 2, &values, &version, &chunks).ok());
  EXPECT_EQ(version, 2);
  std::vector<float> want = Initial();
  for (int step = 0; step < 2; ++step) {
    for (uint64_t i = 0; i < kSize; ++i) want[i] -= 0.5f * ((g[i] + g[i]) / 2.0f);
  }
  EXPECT_TRUE(values == want);
}

// An end marker must name the tensor its values belong to: one with values and
// no tensor is refused, and the push it ended applies nothing.
TEST_F(ParameterServiceTest, AnEndOfPushWithValuesButNoTensorIsRefused) {
  const std::vector<float> g(20, 0.25f);
  grpc::ClientContext ctx;
  SetTimeout(&ctx, absl::Seconds(30));
  auto stream = stub_->PushStream(&ctx);
  ASSERT_TRUE(stream->Write(Chunk("j", 0, 0, "dense0/w", 0, g.data(), 10)));
  PushChunk end = Chunk("j", 0, 0, "", 10, g.data(), 10);
  end.set_end_of_push(true);
  ASSERT_TRUE(stream->Write(end));
  ExpectPushRefused(stream.get(), "no tensor");
  ExpectNothingApplied();
}

// Small pieces batched into one message (PushChunk.batch) are staged like
// chunks of their own: worker 0 pushes batches whose own tensor field holds
// one more piece, worker 1 ends its PushStream push with a batch that holds
// nothing else, and each push applies exactly once. A pull of many small
// slices comes back batched the same way (PullChunk.batch), up to
// kMaxBatchBytes of payload to a message, with large pieces as before.
TEST_F(ParameterServiceTest, BatchedPiecesTravelLikeChunksOfTheirOwn) {
  std::vector<float> g(kSize);
  for (uint64_t i = 0; i < kSize; ++i) g[i] = 0.001f * static_cast<float>(i % 777);
  constexpr uint64_t kPiece = 3000;    // elements: 12 KB, batched
  constexpr uint64_t kPieces = 100;    // the first 300000 elements
  constexpr uint64_t kPerMessage = 25;
  auto entry = [&](PushChunk* batch, uint64_t piece) {
    PushChunk* e = batch->add_batch();
    e->set_tensor("dense0/w");
    e->set_offset(piece * kPiece);
    e->set_values(reinterpret_cast<const char*>(g.data() + piece * kPiece),
                  kPiece * sizeof(float));
  };
  const size_t per = kMaxChunkBytes / 4;
  std::vector<PushChunk> plain;  // the rest of the tensor
  for (uint64_t i = kPieces * kPiece; i < kSize; i += per) {
    plain.push_back(Chunk("j", 0, 0, "dense0/w", i, g.data() + i, std::min(per, kSize - i)));
  }
  // Worker 0, on Push: each batch's own piece is its last.
  std::vector<PushChunk> chunks;
  for (uint64_t m = 0; m < kPieces / kPerMessage; ++m) {
    const uint64_t own = (m + 1) * kPerMessage - 1;
    PushChunk batch = Chunk("j", 0, 0, "dense0/w", own * kPiece, g.data() + own * kPiece, kPiece);
    for (uint64_t p = m * kPerMessage; p < own; ++p) entry(&batch, p);
    chunks.push_back(batch);
  }
  chunks.insert(chunks.end(), plain.begin(), plain.end());
  const grpc::Status pushed = PushChunks(chunks);
  ASSERT_TRUE(pushed.ok()) << pushed.error_message();
  {
    // Worker 1, on PushStream: the plain chunks first, then batches, the
    // last of them ending the push.
    grpc::ClientContext ctx;
    SetTimeout(&ctx, absl::Seconds(30));
    auto stream = stub_->PushStream(&ctx);
    for (PushChunk c : plain) {
      c.set_worker(1);
      ASSERT_TRUE(stream->Write(c));
    }
    for (uint64_t m = 0; m < kPieces / kPerMessage; ++m) {
      PushChunk batch;
      batch.set_job_id("j");
      batch.set_worker(1);
      batch.set_end_of_push(m + 1 == kPieces / kPerMessage);
      for (uint64_t p = m * kPerMessage; p < (m + 1) * kPerMessage; ++p) entry(&batch, p);
      ASSERT_TRUE(stream->Write(batch));
    }
    PushResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_EQ(resp.elements(), kSize);
    stream->WritesDone();
    ASSERT_TRUE(stream->Finish().ok());
  }
  std::vector<float> want = Initial();
  for (uint64_t i = 0; i < kSize; ++i) want[i] -= 0.5f * g[i];

  // One pull of the 100 small slices and the large rest.
  PullRequest req;
  req.set_job_id("j");
  req.set_clock(1);
  for (uint64_t p = 0; p < kPieces; ++p) {
    TensorSlice* s = req.add_slices();
    s->set_tensor("dense0/w");
    s->set_begin(p * kPiece);
    s->set_end((p + 1) * kPiece);
  }
  TensorSlice* rest = req.add_slices();
  rest->set_tensor("dense0/w");
  rest->set_begin(kPieces * kPiece);
  rest->set_end(kSize);
  grpc::ClientContext ctx;
  SetTimeout(&ctx, absl::Seconds(30));
  auto reader = stub_->Pull(&ctx, req);
  std::vector<float> values(kSize, NAN);
  std::vector<int> entries;  // per message
  PullChunk c;
  auto place = [&](const PullChunk& piece) {
    ASSERT_EQ(piece.tensor(), "dense0/w");
    ASSERT_LE(piece.offset() * 4 + piece.values().size(), kSize * 4);
    EXPECT_EQ(piece.version(), 1);
    std::memcpy(values.data() + piece.offset(), piece.values().data(), piece.values().size());
  };
  while (reader->Read(&c)) {
    entries.push_back(c.batch_size());
    EXPECT_EQ(c.view_clock(), 0);
    for (const PullChunk& e : c.batch()) {
      EXPECT_EQ(e.view_clock(), 0);  // only the message's applies
      place(e);
    }
    if (c.batch_size() == 0) place(c);
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(values == want);
  // 12000-byte pieces, as many to a message as kMaxBatchBytes holds with
  // their framing (87 of 1 MiB: 1044000 bytes of payload), then the rest of
  // the tensor in kPullPieceBytes pieces (the last of 368 KiB), unbatched.
  const size_t per_batch = kMaxBatchBytes / (kPiece * sizeof(float));
  std::vector<int> want_entries(kPieces / per_batch, static_cast<int>(per_batch));
  want_entries.push_back(static_cast<int>(kPieces % per_batch));
  const uint64_t rest_bytes = (kSize - kPieces * kPiece) * sizeof(float);
  want_entries.resize(want_entries.size() + (rest_bytes + kPullPieceBytes - 1) / kPullPieceBytes,
                      0);
  EXPECT_EQ(entries, want_entries);
}

// Several pulls on one PullStream: each is answered by its chunks, only the
// last marked end_of_pull; a pull that waits past its wait_ms, then a bad
// request, each end the stream with a clear status.
TEST_F(ParameterServiceTest, PullStreamCarriesPullAfterPull) {
  auto request = [](int64_t clock, uint64_t wait_ms, const std::string& tensor) {
    PullRequest req;
    req.set_job_id("j");
    req.set_worker(0);
    req.set_clock(clock);
    req.set_wait_ms(wait_ms);
    TensorSlice* s = req.add_slices();
    s->set_tensor(tensor);
    s->set_begin(0);
    s->set_end(kSize);
    return req;
  };
  // Reads one pull's chunks; false if the stream ended first.
  auto read_pull = [](grpc::ClientReaderWriter<PullRequest, PullChunk>* stream,
                      std::vector<float>* values, int* chunks) {
    values->assign(kSize, NAN);
    *chunks = 0;
    PullChunk c;
    while (stream->Read(&c)) {
      ++*chunks;
      EXPECT_LE(c.offset() * 4 + c.values().size(), kSize * 4);
      std::memcpy(values->data() + c.offset(), c.values().data(), c.values().size());
      if (c.end_of_pull()) return true;
    }
    return false;
  };
  const std::vector<float> want = Initial();
  const int want_chunks =
      static_cast<int>((kSize * sizeof(float) + kPullPieceBytes - 1) / kPullPieceBytes);
  {
    grpc::ClientContext ctx;
    SetTimeout(&ctx, absl::Seconds(30));
    auto stream = stub_->PullStream(&ctx);
    std::vector<float> values;
    int chunks = 0;
    for (int pull = 0; pull < 3; ++pull) {
      ASSERT_TRUE(stream->Write(request(0, 0, "dense0/w")));
      ASSERT_TRUE(read_pull(stream.get(), &values, &chunks)) << "pull " << pull;
      EXPECT_EQ(chunks, want_chunks);
      EXPECT_TRUE(values == want) << "pull " << pull;
    }
    // Clock 1 needs both workers' pushes at clock 0: the wait ends at wait_ms.
    const absl::Time t0 = absl::Now();
    ASSERT_TRUE(stream->Write(request(1, 200, "dense0/w")));
    EXPECT_FALSE(read_pull(stream.get(), &values, &chunks));
    const grpc::Status st = stream->Finish();
    EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_THAT(st.error_message(), HasSubstr("job 'j'"));
  }
  {
    grpc::ClientContext ctx;
    SetTimeout(&ctx, absl::Seconds(30));
    auto stream = stub_->PullStream(&ctx);
    std::vector<float> values;
    int chunks = 0;
    ASSERT_TRUE(stream->Write(request(0, 0, "nope/w")));
    EXPECT_FALSE(read_pull(stream.get(), &values, &chunks));
    EXPECT_EQ(chunks, 0);
    const grpc::Status st = stream->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(st.error_message(), HasSubstr("'nope/w'"));
  }
  {
    // Garbage that is no PullRequest.
    grpc::GenericStub generic(MakeChannel(absl::StrCat("127.0.0.1:", server_.port())));
    grpc::ClientContext ctx;
    SetTimeout(&ctx, absl::Seconds(30));
    grpc::CompletionQueue cq;
    auto call = generic.PrepareCall(&ctx, "/tessera.ParameterService/PullStream", &cq);
    void* tag;
    bool ok;
    call->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    const std::string junk = "\xff\xff\xff\xff";
    grpc::Slice slice(junk);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, reinterpret_cast<void*>(2));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    call->WritesDone(reinterpret_cast<void*>(3));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    grpc::Status st;
    call->Finish(&st, reinterpret_cast<void*>(4));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(st.error_message(), HasSubstr("not a PullRequest"));
  }
}

TEST_F(ParameterServiceTest, BadPullsGetAClearStatus) {
  auto pull = [&](const std::string& job, const std::string& tensor, uint64_t begin,
                  uint64_t end, int64_t clock, absl::Duration timeout) {
    PullRequest req;
    req.set_job_id(job);
    req.set_clock(clock);
    if (!tensor.empty()) {
      TensorSlice* s = req.add_slices();
      s->set_tensor(tensor);
      s->set_begin(begin);
      s->set_end(end);
    }
    grpc::ClientContext ctx;
    SetTimeout(&ctx, timeout);
    auto reader = stub_->Pull(&ctx, req);
    PullChunk c;
    while (reader->Read(&c)) {
    }
    return reader->Finish();
  };
  grpc::Status s = pull("nojob", "dense0/w", 0, 10, 0, absl::Seconds(10));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("'nojob'"));
  s = pull("j", "nope/w", 0, 10, 0, absl::Seconds(10));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("'nope/w'"));
  s = pull("j", "dense0/w", 0, kSize + 1, 0, absl::Seconds(10));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = pull("j", "", 0, 0, 0, absl::Seconds(10));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  {
    PullRequest req;
    req.set_job_id("j");
    *req.add_slices() = TensorSlice();
    req.mutable_slices(0)->set_tensor("dense0/w");
    req.mutable_slices(0)->set_end(10);
    req.add_encodings(COMPRESSION_TOPK);
    grpc::ClientContext ctx;
    SetTimeout(&ctx, absl::Seconds(10));
    auto reader = stub_->Pull(&ctx, req);
    PullChunk c;
    while (reader->Read(&c)) {
    }
    s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("pulls take none, fp16 or bf16"));
  }
  // Clock 1 needs both workers' pushes: the client's deadline ends the wait.
  s = pull("j", "dense0/w", 0, 10, 1, absl::Milliseconds(300));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(ParameterServiceTest, PullWaitIsCappedByTheServerOption) {
  ParameterServer::Options options;
  options.service.max_pull_wait = absl::Milliseconds(100);
  ParameterServer capped(options);
  ASSERT_TRUE(capped.Start("127.0.0.1", 0).ok());
  ASSERT_TRUE(capped.store()
                  ->CreateJob("k", [] {
                    JobSpec spec;
                    spec.mutable_optimizer()->set_kind(OptimizerSpec::SGD);
                    spec.mutable_optimizer()->set_learning_rate(0.1f);
                    return spec;
                  }(), {Tensor()}, {[] {
                    TensorSlice s;
                    s.set_tensor("dense0/w");
                    s.set_end(kSize);
                    return s;
                  }()}, {0})
                  .ok());
  auto stub = ParameterService::NewStub(MakeChannel(absl::StrCat("127.0.0.1:", capped.port())));
  PullRequest req;
  req.set_job_id("k");
  req.set_clock(5);
  TensorSlice* slice = req.add_slices();
  slice->set_tensor("dense0/w");
  slice->set_end(4);
  grpc::ClientContext ctx;
  SetTimeout(&ctx, absl::Seconds(60));
  auto reader = stub->Pull(&ctx, req);
  PullChunk c;
  EXPECT_FALSE(reader->Read(&c));
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(s.error_message(), HasSubstr("job 'k'"));
  EXPECT_THAT(s.error_message(), HasSubstr("[0]"));  // the live worker that has not pushed
}

TEST_F(ParameterServiceTest, StopWakesAWaitingPull) {
  grpc::Status result;
  std::thread puller([&] {
    std::vector<float> values;
    int64_t version = 0;
    int chunks = 0;
    result = PullAll(0, 1, &values, &version, &chunks);
  });
  // Stop only once the pull is blocked in the store; a hang fails by ctest's timeout.
  while (true) {
    auto stats = server_.store()->Stats("j");
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (stats->waiting_pulls > 0) break;
    std::this_thread::yield();
  }
  server_.Stop();
  puller.join();
  EXPECT_EQ(result.error_code(), grpc::StatusCode::CANCELLED) << result.error_message();
  EXPECT_THAT(result.error_message(), HasSubstr("shutting down"));
}

TEST_F(ParameterServiceTest, LiveWorkersAndDropOverRpc) {
  SetLiveWorkersRequest live;
  live.set_job_id("j");
  live.add_live_workers(0);
  SetLiveWorkersResponse live_resp;
  grpc::ClientContext ctx1;
  ASSERT_TRUE(stub_->SetLiveWorkers(&ctx1, live, &live_resp).ok());
  ASSERT_TRUE(PushAll(0, 0, std::vector<float>(kSize, 1.0f)).ok());
  EXPECT_EQ(PushAll(1, 1, std::vector<float>(kSize, 1.0f)).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  DropJobRequest drop;
  drop.set_job_id("j");
  DropJobResponse drop_resp;
  grpc::ClientContext ctx2;
  ASSERT_TRUE(stub_->DropJob(&ctx2, drop, &drop_resp).ok());
  grpc::ClientContext ctx3;
  EXPECT_EQ(stub_->DropJob(&ctx3, drop, &drop_resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace tessera::server
