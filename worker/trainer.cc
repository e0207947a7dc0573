#include "worker/trainer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/staleness.h"
#include "spdlog/spdlog.h"
#include "worker/model.h"

namespace tessera::worker {

absl::StatusOr<const Dataset*> DatasetCache::Get(const DataSpec& spec, bool train) {
  const int64_t limit = train ? spec.train_limit() : spec.test_limit();
  const std::string key = absl::StrCat(spec.path(), train ? "#train#" : "#test#", limit);
  for (const Entry& e : entries_) {
    if (e.key == key) return e.data.get();
  }
  if (spec.format() != DataSpec::IDX) {
    return absl::InvalidArgumentError("data.format: only idx is supported");
  }
  TESSERA_ASSIGN_OR_RETURN(Dataset data, LoadIdxSplit(spec.path(), train, limit));
  entries_.push_back(Entry{key, std::make_unique<Dataset>(std::move(data))});
  return entries_.back().data.get();
}

bool CacheServes(const JobSpec& spec, int64_t clock, int64_t cached_view) {
  if (spec.mode() != SSP || !spec.ssp_cache() || cached_view < -1) return false;
  return cached_view >= clock - spec.staleness() - 1;
}

StragglerInjector::StragglerInjector(const StragglerSpec& spec, uint64_t seed, int rank)
    : spec_(spec),
      persistent_(spec.persistent_factor() > 1 && spec.persistent_rank() == rank),
      rng_(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(rank) + 1) {}

absl::Duration StragglerInjector::BeforeStep() {
  if (spec_.transient_probability() <= 0 || spec_.transient_delay_ms() <= 0) {
    return absl::ZeroDuration();
  }
  std::bernoulli_distribution pause(std::min(1.0, spec_.transient_probability()));
  return pause(rng_) ? absl::Milliseconds(spec_.transient_delay_ms()) : absl::ZeroDuration();
}

absl::Duration StragglerInjector::AfterCompute(absl::Duration compute) const {
  if (!persistent_) return absl::ZeroDuration();
  return compute * (spec_.persistent_factor() - 1);
}

Trainer::Trainer(TaskReporter* reporter, ParameterClientFactory client_factory,
                 DatasetCache* datasets, const std::atomic<bool>* cancel,
                 ComputeBackend* backend)
    : reporter_(reporter),
      client_factory_(std::move(client_factory)),
      datasets_(datasets),
      cancel_(cancel),
      backend_(backend) {}

absl::StatusOr<TaskResult> Trainer::Run(const WorkerAssignment& a) {
  const JobSpec& spec = a.spec();
  const std::string& job = a.job_id();
  const int rank = a.rank();
  const int workers = a.num_workers();
  if (workers < 1 || rank < 0 || rank >= workers) {
    return absl::InvalidArgumentError(absl::StrCat("bad assignment: rank ", rank, " of ", workers));
  }
  TESSERA_ASSIGN_OR_RETURN(const Dataset* train, datasets_->Get(spec.data(), /*train=*/true));
  TESSERA_ASSIGN_OR_RETURN(const Dataset* test, datasets_->Get(spec.data(), /*train=*/false));
  if (test->dim != train->dim) {
    return absl::InvalidArgumentError(absl::StrCat("test images have ", test->dim,
                                                   " pixels, training images ", train->dim));
  }
  const int classes = std::max(train->num_classes, test->num_classes);
  const int batch = spec.batch_size();
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                           Model::Create(spec.model(), train->dim, classes, batch, backend_));

  TESSERA_ASSIGN_OR_RETURN(TensorPlan plan,
                           reporter_->RegisterTensors(job, rank, model->Parameters()));
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<ParameterClient> client,
                           client_factory_(job, rank, plan));

  std::vector<absl::Span<float>> params;
  std::vector<absl::Span<const float>> grads;
  for (int i = 0; i < model->num_tensors(); ++i) {
    params.push_back(model->param(i));
    grads.push_back(model->grad(i));
  }

  const int64_t steps_per_epoch = BatchSampler::StepsPerEpoch(train->size, workers, batch);
  if (steps_per_epoch < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the training set (", train->size, " examples) is too small for ", workers,
        " workers at batch_size ", batch));
  }
  int64_t total_steps = steps_per_epoch * spec.epochs();
  if (spec.max_steps() > 0) total_steps = std::min(total_steps, spec.max_steps());
  spdlog::info("job {} rank {}/{}: {} train / {} test examples, {} steps ({} per epoch)", job,
               rank, workers, train->size, test->size, total_steps, steps_per_epoch);

  BatchSampler sampler(ShardOf(train->size, rank, workers), batch, spec.seed(), rank);
  std::vector<int64_t> indices;
  std::vector<float> x;
  std::vector<int32_t> y;
  TaskResult result;
  result.staleness_histogram.assign(kStalenessBuckets, 0);
  StragglerInjector straggler(spec.straggler(), spec.seed(), rank);
  int64_t cached_view = -2;  // the view clock of the parameters in `params`; < -1: none
  const absl::Time start = absl::Now();
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  int64_t step = 0;
  for (int epoch = 0; step < total_steps; ++epoch) {
    sampler.StartEpoch(epoch);
    for (int64_t s = 0; s < steps_per_epoch && step < total_steps; ++s, ++step) {
      if (cancel_->load()) {
        result.cancelled = true;
        return result;
      }
      if (const absl::Duration pause = straggler.BeforeStep(); pause > absl::ZeroDuration()) {
        absl::SleepFor(pause);
        result.straggler_seconds += absl::ToDoubleSeconds(pause);
      }
      // Pull (unless the SSP cache serves), and prepare the batch while the
      // pull is in flight.
      const absl::Time t0 = absl::Now();
      bool pulling = false;
      if (CacheServes(spec, step, cached_view)) {
        ++result.pulls_saved;
      } else {
        TESSERA_RETURN_IF_ERROR_CTX(client->StartPull(step, absl::MakeSpan(params)),
                                    absl::StrCat("pull at step ", step));
        pulling = true;
        ++result.pulls;
      }
      const absl::Time t_gather = absl::Now();
      sampler.Batch(s, &indices);
      Gather(*train, indices, &x, &y);
      const absl::Time t_wait = absl::Now();
      if (pulling) {
        TESSERA_RETURN_IF_ERROR_CTX(client->FinishPull(&cached_view),
                                    absl::StrCat("pull at step ", step));
      }
      ++result.staleness_histogram[std::min<int64_t>(
          ObservedStaleness(step, cached_view), kStalenessBuckets - 1)];
      const absl::Time t1 = absl::Now();

      // Forward/backward; each layer's gradient goes to the client as soon as
      // it is ready (last layer first), so it is sent during the rest of
      // backward. A persistent straggler holds its gradients until its
      // injected slowness has passed, as a slow device would.
      TESSERA_RETURN_IF_ERROR_CTX(client->BeginPush(step), absl::StrCat("push at step ", step));
      const bool hold_push = straggler.persistent();
      absl::Time first_push = absl::InfiniteFuture();
      absl::Duration in_push_calls;
      auto push_tensor = [&](int tensor) -> absl::Status {
        const absl::Time a = absl::Now();
        if (first_push == absl::InfiniteFuture()) first_push = a;
        absl::Status st = client->PushTensor(tensor, model->grad(tensor));
        in_push_calls += absl::Now() - a;
        return st;
      };
      absl::StatusOr<Model::StepResult> step_result = model->ForwardBackward(
          x.data(), y.data(), batch, hold_push ? Model::GradientReady() : push_tensor);
      if (!step_result.ok()) {
        return Annotate(step_result.status(), absl::StrCat("step ", step, " on ", model->backend()->name()));
      }
      const Model::StepResult& r = *step_result;
      const absl::Time t2 = absl::Now();
      const absl::Duration compute = (t2 - t1) - in_push_calls;
      if (const absl::Duration slow = straggler.AfterCompute(compute);
          slow > absl::ZeroDuration()) {
        absl::SleepFor(slow);
        result.straggler_seconds += absl::ToDoubleSeconds(slow);
      }
      const absl::Time t3 = absl::Now();
      if (hold_push) {
        for (int i = 0; i < model->num_tensors(); ++i) {
          TESSERA_RETURN_IF_ERROR_CTX(push_tensor(i), absl::StrCat("push at step ", step));
        }
      }
      TESSERA_RETURN_IF_ERROR_CTX(client->FinishPush(), absl::StrCat("push at step ", step));
      const absl::Time t4 = absl::Now();
      result.pull_seconds += absl::ToDoubleSeconds((t_gather - t0) + (t1 - t_wait));
      result.compute_seconds += absl::ToDoubleSeconds(compute + (t_wait - t_gather));
      result.push_seconds += absl::ToDoubleSeconds(in_push_calls + (t4 - t3));
      if (!hold_push && first_push < t2) {
        result.overlap_seconds += absl::ToDoubleSeconds(t2 - first_push);
      }
      loss_sum += r.loss * batch;
      correct += r.correct;
      seen += batch;
      const bool last = step + 1 == total_steps;
      if ((step + 1) % spec.log_every_steps() == 0 || last || s + 1 == steps_per_epoch) {
        WorkerProgress p;
        p.set_rank(rank);
        p.set_epoch(epoch);
        p.set_step(step + 1);
        p.set_total_steps(total_steps);
        p.set_loss(static_cast<float>(loss_sum / seen));
        p.set_accuracy(static_cast<float>(correct) / seen);
        p.set_pulls(result.pulls);
        p.set_pulls_saved(result.pulls_saved);
        for (int64_t n : result.staleness_histogram) p.add_staleness_histogram(n);
        loss_sum = 0;
        correct = seen = 0;
        TESSERA_ASSIGN_OR_RETURN(bool cancelled,
                                 reporter_->ReportProgress(job, p, absl::ToDoubleSeconds(absl::Now() - start)));
        if (cancelled) {
          result.cancelled = true;
          return result;
        }
      }
    }
  }
  result.steps = step;
  // The parameters after the last step: every worker's push for it is in.
  TESSERA_RETURN_IF_ERROR_CTX(client->Pull(step, absl::MakeSpan(params), nullptr), "final pull");
  result.train_seconds = absl::ToDoubleSeconds(absl::Now() - start);

  const Range part = ShardOf(test->size, rank, workers);
  if (!part.empty()) {
    TESSERA_ASSIGN_OR_RETURN(
        const Model::StepResult eval,
        model->Evaluate(test->features.data() + part.begin * test->dim,
                        test->labels.data() + part.begin, static_cast<int>(part.size())));
    result.test_correct = eval.correct;
    result.test_loss_sum = eval.loss;
    result.test_examples = static_cast<int64_t>(part.size());
  }
  spdlog::info(
      "job {} rank {} on {}: {} steps in {:.1f}s (pull {:.1f}s incl. waiting for the slowest "
      "worker, compute {:.1f}s, push {:.1f}s, gradients in flight during backward {:.1f}s, "
      "injected pauses {:.1f}s; {} pulls, {} served from the cache), test accuracy {:.4f} on {} "
      "examples",
      job, rank, model->backend()->name(), step, result.train_seconds, result.pull_seconds,
      result.compute_seconds, result.push_seconds, result.overlap_seconds,
      result.straggler_seconds, result.pulls, result.pulls_saved,
      result.test_examples ? double(result.test_correct) / result.test_examples : 0.0,
      result.test_examples);
  return result;
}

}  // namespace tessera::worker
