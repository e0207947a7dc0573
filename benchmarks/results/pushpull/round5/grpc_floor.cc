// Experiment: per-operation cost of gRPC threading models for a 1 MiB push / pull
// round trip on long-lived bidi streams. client: cb | cq ; server: cb | cq.
// Build from the repository root, after `make build`:
//   g++ -O2 -std=c++17 -Ibuild/gen -I. benchmarks/results/pushpull/round5/grpc_floor.cc \
//     build/proto/libtessera_proto.a -o /tmp/grpc_floor $(pkg-config --cflags --libs grpc++ protobuf)
// Run: /tmp/grpc_floor CLIENT SERVER BYTES STRIPES push|pull [SECONDS]
#include <grpcpp/grpcpp.h>
#include "proto/parameter_service.grpc.pb.h"  // the DUMMY=sync service
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>
#include <chrono>
#include <algorithm>
#include <cstdio>
#include <string>
#include <malloc.h>
#include <cstdlib>

using namespace std::chrono;
static double Now() { return duration<double>(steady_clock::now().time_since_epoch()).count(); }

static std::vector<char> g_server_buf(size_t(64) << 20);  // server's "parameters"

static void CopyOut(const grpc::ByteBuffer& bb, char* dst) {
  std::vector<grpc::Slice> slices;
  (void)bb.Dump(&slices);
  size_t off = 0;
  for (auto& s : slices) { memcpy(dst + off, s.begin(), s.size()); off += s.size(); }
}

// ---------------- server: callback ----------------
class CbReactor : public grpc::ServerGenericBidiReactor {
 public:
  CbReactor() { StartRead(&in_); }
  void OnReadDone(bool ok) override {
    if (!ok) { Finish(grpc::Status::OK); return; }
    // first byte: 'P' push chunk (then reply when 'last'), 'L' pull request of N bytes
    std::vector<grpc::Slice> sl; (void)in_.Dump(&sl);
    // header in first 16 bytes of the message: type, last, size
    char hdr[16]; size_t got = 0;
    for (auto& s : sl) { size_t n = std::min(s.size(), 16 - got); memcpy(hdr + got, s.begin(), n); got += n; if (got == 16) break; }
    if (hdr[0] == 'P') {
      size_t off = 0; size_t skip = 16;
      for (auto& s : sl) {
        const char* p = (const char*)s.begin(); size_t n = s.size();
        size_t k = std::min(skip, n); p += k; n -= k; skip -= k;
        memcpy(g_server_buf.data() + off, p, n); off += n;
      }
      if (hdr[1]) { reply_ = grpc::ByteBuffer(&small_, 1); StartWrite(&reply_); return; }
      StartRead(&in_);
    } else {
      uint64_t size; memcpy(&size, hdr + 8, 8);
      grpc::Slice s(size);
      memcpy((void*)s.begin(), g_server_buf.data(), size);
      reply_ = grpc::ByteBuffer(&s, 1);
      StartWrite(&reply_);
    }
  }
  void OnWriteDone(bool ok) override { if (!ok) { Finish(grpc::Status::OK); return; } StartRead(&in_); }
  void OnDone() override { delete this; }
 private:
  grpc::ByteBuffer in_, reply_;
  grpc::Slice small_{std::string(16, 'r')};
};
class CbService : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override { return new CbReactor; }
};

// ---------------- server: async cq ----------------
struct CqCall {
  grpc::GenericServerContext ctx;
  grpc::GenericServerAsyncReaderWriter stream{&ctx};
  grpc::ByteBuffer in, reply;
  int state = 0;  // 0 requested, 1 reading, 2 writing
};
static void ServeCq(grpc::AsyncGenericService* svc, grpc::ServerCompletionQueue* cq) {
  auto request = [&](){ auto* c = new CqCall; svc->RequestCall(&c->ctx, &c->stream, cq, cq, c); };
  request();
  void* tag; bool ok;
  grpc::Slice small(std::string(16, 'r'));
  while (cq->Next(&tag, &ok)) {
    auto* c = static_cast<CqCall*>(tag);
    if (c->state == 0) { if (!ok) { delete c; continue; } request(); c->state = 1; c->stream.Read(&c->in, c); continue; }
    if (!ok) { if (c->state != 3) { c->state = 3; c->stream.Finish(grpc::Status::OK, c); } else delete c; continue; }
    if (c->state == 3) { delete c; continue; }
    if (c->state == 2) { c->state = 1; c->stream.Read(&c->in, c); continue; }
    std::vector<grpc::Slice> sl; (void)c->in.Dump(&sl);
    char hdr[16]; size_t got = 0;
    for (auto& s : sl) { size_t n = std::min(s.size(), 16 - got); memcpy(hdr + got, s.begin(), n); got += n; if (got == 16) break; }
    if (hdr[0] == 'P') {
      size_t off = 0, skip = 16;
      for (auto& s : sl) { const char* p = (const char*)s.begin(); size_t n = s.size(); size_t k = std::min(skip, n); p += k; n -= k; skip -= k; memcpy(g_server_buf.data() + off, p, n); off += n; }
      if (hdr[1]) { c->reply = grpc::ByteBuffer(&small, 1); c->state = 2; c->stream.Write(c->reply, c); }
      else c->stream.Read(&c->in, c);
    } else {
      uint64_t size; memcpy(&size, hdr + 8, 8);
      grpc::Slice s(size); memcpy((void*)s.begin(), g_server_buf.data(), size);
      c->reply = grpc::ByteBuffer(&s, 1); c->state = 2; c->stream.Write(c->reply, c);
    }
  }
}

static std::shared_ptr<grpc::Channel> Chan(int port) {
  grpc::ChannelArguments a; a.SetMaxReceiveMessageSize(-1); a.SetMaxSendMessageSize(-1);
  a.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 20);
  a.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (getenv("RC")) { a.SetInt(GRPC_ARG_TCP_MIN_READ_CHUNK_SIZE, atoi(getenv("RC"))); a.SetInt(GRPC_ARG_TCP_READ_CHUNK_SIZE, atoi(getenv("RC"))); }
  if (getenv("FS")) a.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, atoi(getenv("FS")));
  if (getenv("WB")) a.SetInt(GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE, atoi(getenv("WB")));
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), a);
}

static grpc::ByteBuffer Msg(char type, bool last, uint64_t size, const char* payload, size_t plen, std::string* hdrstore) {
  hdrstore->assign(16, 0); (*hdrstore)[0] = type; (*hdrstore)[1] = last; memcpy(&(*hdrstore)[8], &size, 8);
  grpc::Slice s[2] = {grpc::Slice(hdrstore->data(), 16, grpc::Slice::STATIC_SLICE), grpc::Slice(payload, plen, grpc::Slice::STATIC_SLICE)};
  return grpc::ByteBuffer(s, plen ? 2 : 1);
}

// ---------------- client: callback ----------------
class CbStream : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  CbStream(grpc::GenericStub* stub) {
    stub->PrepareBidiStreamingCall(&ctx_, "/x.Svc/Op", {}, this);
    AddHold(); StartCall();
  }
  void Op(const grpc::ByteBuffer& out, char* dst, const grpc::ByteBuffer* second = nullptr) {
    dst_ = dst; done_ = false; out_ = out; have2_ = second != nullptr; if (second) out2_ = *second;
    StartWrite(&out_);
  }
  void Wait() { std::unique_lock<std::mutex> l(mu_); cv_.wait(l, [&]{ return done_; }); }
  void OnWriteDone(bool) override { if (have2_) { have2_ = false; StartWrite(&out2_); return; } StartRead(&in_); }
  void OnReadDone(bool ok) override {
    if (ok && dst_) CopyOut(in_, dst_);
    std::lock_guard<std::mutex> l(mu_); done_ = true; cv_.notify_one();
  }
  void OnDone(const grpc::Status&) override {}
  void Close() { ctx_.TryCancel(); RemoveHold(); }
 private:
  grpc::ClientContext ctx_;
  grpc::ByteBuffer out_, in_, out2_; bool have2_ = false;
  char* dst_ = nullptr;
  std::mutex mu_; std::condition_variable cv_; bool done_ = false;
};

// ---------------- client: own cq ----------------
struct CqStream {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> rw;
  grpc::ByteBuffer in;
};

int main(int argc, char** argv) {
  std::string cmode = argv[1], smode = argv[2];
  size_t size = std::stoul(argv[3]);
  int stripes = std::stoi(argv[4]);
  std::string op = argv[5];  // push | pull
  double secs = argc > 6 ? std::stod(argv[6]) : 2.0;
  mallopt(M_ARENA_MAX, 1); mallopt(M_TRIM_THRESHOLD, 1 << 30); mallopt(M_MMAP_THRESHOLD, 1 << 30);
  int port = 0;
  grpc::ServerBuilder b; b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.SetMaxReceiveMessageSize(-1); b.SetMaxSendMessageSize(-1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 20);
  if (getenv("RC")) { b.AddChannelArgument(GRPC_ARG_TCP_MIN_READ_CHUNK_SIZE, atoi(getenv("RC"))); b.AddChannelArgument(GRPC_ARG_TCP_READ_CHUNK_SIZE, atoi(getenv("RC"))); }
  if (getenv("FS")) b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, atoi(getenv("FS")));
  if (getenv("WB")) b.AddChannelArgument(GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE, atoi(getenv("WB")));
  CbService cbs; grpc::AsyncGenericService asvc;
  std::unique_ptr<grpc::ServerCompletionQueue> scq;
  if (smode == "cb") b.RegisterCallbackGenericService(&cbs); else { b.RegisterAsyncGenericService(&asvc); scq = b.AddCompletionQueue(); }
  auto server = b.BuildAndStart();
  std::thread st; if (scq) st = std::thread(ServeCq, &asvc, scq.get());
  // DUMMY=cb|sync|cbclient (item 27): a second, idle server in the process
  // with a callback service (cb), with the sync ParameterService (sync, all
  // its methods unimplemented), or with the callback service and one idle
  // callback client stream open to it (cbclient).
  CbService dummy_svc; tessera::ParameterService::Service dummy_sync; std::unique_ptr<grpc::Server> dummy;
  const std::string dummy_mode = getenv("DUMMY") ? getenv("DUMMY") : "";
  int dummy_port = 0;
  if (!dummy_mode.empty()) {
    grpc::ServerBuilder db; db.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &dummy_port);
    if (dummy_mode == "sync") db.RegisterService(&dummy_sync); else db.RegisterCallbackGenericService(&dummy_svc);
    dummy = db.BuildAndStart();
  }
  std::vector<char> src(size, 1), dst(size, 0);
  std::vector<std::shared_ptr<grpc::Channel>> chans; std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int i = 0; i < stripes; ++i) { chans.push_back(Chan(port)); stubs.emplace_back(new grpc::GenericStub(chans.back())); }
  size_t part = size / stripes;
  std::vector<std::string> hdrs(stripes), hdrs2(stripes);
  std::function<void()> one;
  std::vector<grpc::ByteBuffer> outs(stripes);
  std::vector<CbStream*> cbs_; std::vector<std::unique_ptr<CqStream>> cqs; grpc::CompletionQueue ccq;
  std::unique_ptr<grpc::GenericStub> dummy_stub;
  if (dummy_mode == "cbclient") { dummy_stub.reset(new grpc::GenericStub(Chan(dummy_port))); new CbStream(dummy_stub.get()); }
  if (cmode == "cb") {
    for (int i = 0; i < stripes; ++i) cbs_.push_back(new CbStream(stubs[i].get()));
    one = [&] {
      for (int i = 0; i < stripes; ++i) {
        if (op == "push") cbs_[i]->Op(Msg('P', true, part, src.data() + i * part, part, &hdrs[i]), nullptr);
        else if (op == "push2") { std::string h2; grpc::ByteBuffer m = Msg('P', true, 0, nullptr, 0, &hdrs2[i]); cbs_[i]->Op(Msg('P', false, part, src.data() + i * part, part, &hdrs[i]), nullptr, &m); }
        else cbs_[i]->Op(Msg('L', false, part, nullptr, 0, &hdrs[i]), dst.data() + i * part);
      }
      for (auto* s : cbs_) s->Wait();
      if (op == "pullnew") for (int i = 0; i < stripes; ++i) { cbs_[i]->Close(); cbs_[i] = new CbStream(stubs[i].get()); }
    };
  } else {
    for (int i = 0; i < stripes; ++i) {
      auto s = std::make_unique<CqStream>();
      s->rw = stubs[i]->PrepareCall(&s->ctx, "/x.Svc/Op", &ccq);
      s->rw->StartCall((void*)1); void* t; bool ok; ccq.Next(&t, &ok);
      cqs.push_back(std::move(s));
    }
    one = [&] {
      for (int i = 0; i < stripes; ++i) {
        outs[i] = op == "push" ? Msg('P', true, part, src.data() + i * part, part, &hdrs[i]) : Msg('L', false, part, nullptr, 0, &hdrs[i]);
        cqs[i]->rw->Write(outs[i], (void*)(intptr_t)(2 * i));
        cqs[i]->rw->Read(&cqs[i]->in, (void*)(intptr_t)(2 * i + 1));
      }
      for (int n = 0; n < 2 * stripes; ++n) {
        void* t; bool ok; ccq.Next(&t, &ok);
        intptr_t k = (intptr_t)t;
        if (k & 1 && op == "pull") CopyOut(cqs[k / 2]->in, dst.data() + (k / 2) * part);
      }
    };
  }
  for (int i = 0; i < 20; ++i) one();
  std::vector<double> lat;
  double t0 = Now(); double c0 = double(clock()) / CLOCKS_PER_SEC;
  while (Now() - t0 < secs) { double a = Now(); one(); lat.push_back(Now() - a); }
  double el = Now() - t0; double cpu = double(clock()) / CLOCKS_PER_SEC - c0;
  std::sort(lat.begin(), lat.end());
  printf("%s-client %s-server %s %zu B x%d: %.3f GB/s  p50 %.3f ms p99 %.3f ms  cpu %.3f s/GB\n", cmode.c_str(), smode.c_str(), op.c_str(), size, stripes,
         size * lat.size() / el / 1e9, lat[lat.size() / 2] * 1e3, lat[lat.size() * 99 / 100] * 1e3, cpu / (size * lat.size() / 1e9));
  fflush(stdout);
  _exit(0);
}
