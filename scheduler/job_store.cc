#include "scheduler/job_store.h"

#include <sqlite3.h>

#include <map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tessera::scheduler {
namespace {

// Bumped whenever the schema changes incompatibly.
constexpr int kSchemaVersion = 1;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  num INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  spec BLOB NOT NULL,
  state INTEGER NOT NULL,
  error TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL DEFAULT 0,
  started_ms INTEGER NOT NULL DEFAULT 0,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  plan BLOB,
  test_accuracy REAL NOT NULL DEFAULT 0,
  test_loss REAL NOT NULL DEFAULT 0,
  test_examples INTEGER NOT NULL DEFAULT 0,
  train_seconds REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS job_servers (
  job INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  name TEXT NOT NULL,
  address TEXT NOT NULL,
  PRIMARY KEY (job, idx));
CREATE TABLE IF NOT EXISTS job_tasks (
  job INTEGER NOT NULL,
  rank INTEGER NOT NULL,
  worker TEXT NOT NULL,
  state INTEGER NOT NULL,
  test_correct INTEGER NOT NULL DEFAULT 0,
  test_examples INTEGER NOT NULL DEFAULT 0,
  test_loss_sum REAL NOT NULL DEFAULT 0,
  train_seconds REAL NOT NULL DEFAULT 0,
  PRIMARY KEY (job, rank));
CREATE TABLE IF NOT EXISTS job_metrics (
  job INTEGER NOT NULL,
  rank INTEGER NOT NULL,
  step INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  wall_seconds REAL NOT NULL,
  loss REAL NOT NULL,
  accuracy REAL NOT NULL,
  PRIMARY KEY (job, step, rank));
)sql";

std::string ColumnText(sqlite3_stmt* st, int i) {
  const unsigned char* p = sqlite3_column_text(st, i);
  return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(st, i))
           : std::string();
}

std::string ColumnBlob(sqlite3_stmt* st, int i) {
  const void* p = sqlite3_column_blob(st, i);
  return p ? std::string(static_cast<const char*>(p), sqlite3_column_bytes(st, i)) : std::string();
}

}  // namespace

absl::StatusOr<int64_t> JobNumber(const std::string& id) {
  int64_t n = 0;
  if (id.rfind("job-", 0) != 0 || !absl::SimpleAtoi(id.substr(4), &n) || n <= 0) {
    return absl::NotFoundError(absl::StrCat("no job '", id, "' (job ids look like job-1)"));
  }
  return n;
}

const char* TaskStateName(TaskState state) {
  switch (state) {
    case TaskState::kAssigned: return "assigned";
    case TaskState::kStarted: return "started";
    case TaskState::kFinished: return "finished";
    case TaskState::kDead: return "dead";
  }
  return "unknown";
}

// One prepared statement, finalized with the store.
class JobStore::Statement {
 public:
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  sqlite3_stmt* get() { return stmt_; }
  void Text(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Blob(int i, const std::string& s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Int(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Real(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void Null(int i) { sqlite3_bind_null(stmt_, i); }

  // Resets the statement when a use of it ends, however it ends, so that no
  // read transaction stays open.
  class Use {
   public:
    explicit Use(Statement* s) : s_(s) {}
    ~Use() {
      sqlite3_reset(s_->stmt_);
      sqlite3_clear_bindings(s_->stmt_);
    }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

   private:
    Statement* const s_;
  };

 private:
  sqlite3_stmt* const stmt_;
};

JobStore::JobStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

JobStore::~JobStore() {
  {
    absl::MutexLock lock(&mu_);
    // Statements must be finalized before the connection closes.
    insert_job_.reset();
    update_job_.reset();
    delete_servers_.reset();
    insert_server_.reset();
    delete_tasks_.reset();
    insert_task_.reset();
    insert_metric_.reset();
    select_metrics_.reset();
  }
  sqlite3_close(db_);
}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                 nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("cannot open job database ", path, ": ", msg));
  }
  std::unique_ptr<JobStore> store(new JobStore(path, db));
  absl::MutexLock lock(&store->mu_);
  TESSERA_RETURN_IF_ERROR(store->Init());
  return store;
}

absl::Status JobStore::Init() {
  sqlite3_busy_timeout(db_, 5000);
  sqlite3_extended_result_codes(db_, 1);
  // The first read of the file: a file that is not a database fails here.
  int version = 0;
  {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &raw, nullptr) != SQLITE_OK) {
      const int code = sqlite3_errcode(db_) & 0xff;
      absl::Status st = Error("read schema version");
      sqlite3_finalize(raw);
      return code == SQLITE_NOTADB || code == SQLITE_CORRUPT ? absl::DataLossError(st.message())
                                                             : st;
    }
    Statement st(raw);
    const int rc = sqlite3_step(st.get());
    if (rc != SQLITE_ROW) {
      const int code = rc & 0xff;
      absl::Status err = Error("read schema version");
      return code == SQLITE_NOTADB || code == SQLITE_CORRUPT ? absl::DataLossError(err.message())
                                                             : err;
    }
    version = sqlite3_column_int(st.get(), 0);
  }
  if (version != 0 && version != kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("job database ", path_, " has schema version ", version,
                     "; this tessera-scheduler reads version ", kSchemaVersion));
  }
  TESSERA_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
  // FULL: each commit is fsync'ed, so an acknowledged change survives even a
  // machine crash; the scheduler writes a few rows per event, not a stream.
  TESSERA_RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL"));
  if (version == 0) {
    // A fresh file, or one written by a scheduler older than the versioned schema.
    sqlite3_stmt* raw = nullptr;
    bool has_tables = false;
    if (sqlite3_prepare_v2(db_, "SELECT count(*) FROM sqlite_master WHERE type='table'", -1, &raw,
                           nullptr) != SQLITE_OK) {
      sqlite3_finalize(raw);
      return Error("read tables");
    }
    {
      Statement st(raw);
      if (sqlite3_step(st.get()) != SQLITE_ROW) return Error("read tables");
      has_tables = sqlite3_column_int(st.get(), 0) > 0;
    }
    if (has_tables) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job database ", path_, " was not written by this version of tessera-scheduler"));
    }
    TESSERA_RETURN_IF_ERROR(Transaction([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      TESSERA_RETURN_IF_ERROR(Exec(kSchema));
      return Exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion).c_str());
    }));
  }
  TESSERA_RETURN_IF_ERROR(Prepare(
      "INSERT INTO jobs(name, spec, state, error, created_ms, started_ms, finished_ms, plan, "
      "test_accuracy, test_loss, test_examples, train_seconds) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
      &insert_job_));
  TESSERA_RETURN_IF_ERROR(Prepare(
      "UPDATE jobs SET name=?1, spec=?2, state=?3, error=?4, created_ms=?5, started_ms=?6, "
      "finished_ms=?7, plan=?8, test_accuracy=?9, test_loss=?10, test_examples=?11, "
      "train_seconds=?12 WHERE num=?13",
      &update_job_));
  TESSERA_RETURN_IF_ERROR(Prepare("DELETE FROM job_servers WHERE job=?1", &delete_servers_));
  TESSERA_RETURN_IF_ERROR(Prepare(
      "INSERT INTO job_servers(job, idx, name, address) VALUES(?1, ?2, ?3, ?4)", &insert_server_));
  TESSERA_RETURN_IF_ERROR(Prepare("DELETE FROM job_tasks WHERE job=?1", &delete_tasks_));
  TESSERA_RETURN_IF_ERROR(Prepare(
      "INSERT INTO job_tasks(job, rank, worker, state, test_correct, test_examples, "
      "test_loss_sum, train_seconds) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
      &insert_task_));
  TESSERA_RETURN_IF_ERROR(Prepare(
      "INSERT OR REPLACE INTO job_metrics(job, rank, step, epoch, wall_seconds, loss, accuracy) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
      &insert_metric_));
  TESSERA_RETURN_IF_ERROR(Prepare(
      "SELECT step, MAX(epoch), AVG(wall_seconds), AVG(loss), AVG(accuracy) FROM job_metrics "
      "WHERE job=?1 AND step>?2 GROUP BY step ORDER BY step",
      &select_metrics_));
  return absl::OkStatus();
}

absl::Status JobStore::Error(absl::string_view what) {
  return absl::UnavailableError(
      absl::StrCat("job database ", path_, ": ", what, ": ", sqlite3_errmsg(db_)));
}

absl::Status JobStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return absl::UnavailableError(absl::StrCat("job database ", path_, ": ", msg));
  }
  return absl::OkStatus();
}

absl::Status JobStore::Prepare(const char* sql, std::unique_ptr<Statement>* out) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr) != SQLITE_OK) {
    sqlite3_finalize(raw);
    return Error(absl::StrCat("prepare \"", sql, "\""));
  }
  *out = std::make_unique<Statement>(raw);
  return absl::OkStatus();
}

template <typename Body>
absl::Status JobStore::Transaction(Body body) {
  TESSERA_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Status st = body();
  if (st.ok()) st = Exec("COMMIT");
  if (!st.ok()) (void)Exec("ROLLBACK");  // the first error is the one to report
  return st;
}

namespace {

// Binds ?1..?12 of the jobs INSERT/UPDATE.
template <typename Stmt>
void BindJob(Stmt* st, const JobRecord& r) {
  st->Text(1, r.spec.name());
  st->Blob(2, r.spec.SerializeAsString());
  st->Int(3, r.state);
  st->Text(4, r.error);
  st->Int(5, r.created_ms);
  st->Int(6, r.started_ms);
  st->Int(7, r.finished_ms);
  if (r.has_plan) {
    st->Blob(8, r.plan.SerializeAsString());
  } else {
    st->Null(8);
  }
  st->Real(9, r.test_accuracy);
  st->Real(10, r.test_loss);
  st->Int(11, r.test_examples);
  st->Real(12, r.train_seconds);
}

}  // namespace

absl::Status JobStore::WriteChildren(int64_t num, const JobRecord& r) {
  {
    Statement::Use use(delete_servers_.get());
    delete_servers_->Int(1, num);
    if (sqlite3_step(delete_servers_->get()) != SQLITE_DONE) return Error("delete servers");
  }
  for (size_t i = 0; i < r.servers.size(); ++i) {
    Statement::Use use(insert_server_.get());
    insert_server_->Int(1, num);
    insert_server_->Int(2, static_cast<int64_t>(i));
    insert_server_->Text(3, r.servers[i].name);
    insert_server_->Text(4, r.servers[i].address);
    if (sqlite3_step(insert_server_->get()) != SQLITE_DONE) return Error("insert server");
  }
  {
    Statement::Use use(delete_tasks_.get());
    delete_tasks_->Int(1, num);
    if (sqlite3_step(delete_tasks_->get()) != SQLITE_DONE) return Error("delete tasks");
  }
  for (size_t rank = 0; rank < r.tasks.size(); ++rank) {
    const TaskRecord& t = r.tasks[rank];
    Statement::Use use(insert_task_.get());
    insert_task_->Int(1, num);
    insert_task_->Int(2, static_cast<int64_t>(rank));
    insert_task_->Text(3, t.worker);
    insert_task_->Int(4, static_cast<int64_t>(t.state));
    insert_task_->Int(5, t.test_correct);
    insert_task_->Int(6, t.test_examples);
    insert_task_->Real(7, t.test_loss_sum);
    insert_task_->Real(8, t.train_seconds);
    if (sqlite3_step(insert_task_->get()) != SQLITE_DONE) return Error("insert task");
  }
  return absl::OkStatus();
}

absl::Status JobStore::Insert(JobRecord* record) {
  absl::MutexLock lock(&mu_);
  int64_t num = 0;
  TESSERA_RETURN_IF_ERROR(Transaction([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    {
      Statement::Use use(insert_job_.get());
      BindJob(insert_job_.get(), *record);
      if (sqlite3_step(insert_job_->get()) != SQLITE_DONE) return Error("insert job");
    }
    num = sqlite3_last_insert_rowid(db_);
    return WriteChildren(num, *record);
  }));
  record->id = absl::StrCat("job-", num);
  return absl::OkStatus();
}

absl::Status JobStore::Update(const JobRecord& r) {
  TESSERA_ASSIGN_OR_RETURN(const int64_t num, JobNumber(r.id));
  absl::MutexLock lock(&mu_);
  return Transaction([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    {
      Statement::Use use(update_job_.get());
      BindJob(update_job_.get(), r);
      update_job_->Int(13, num);
      if (sqlite3_step(update_job_->get()) != SQLITE_DONE) return Error("update job");
    }
    if (sqlite3_changes(db_) != 1) {
      return absl::NotFoundError(absl::StrCat("job database ", path_, ": no job '", r.id, "'"));
    }
    return WriteChildren(num, r);
  });
}

absl::StatusOr<std::vector<JobRecord>> JobStore::LoadAll() {
  absl::MutexLock lock(&mu_);
  std::vector<JobRecord> out;
  std::map<int64_t, size_t> index;  // job number -> position in `out`
  auto run = [&](const char* sql, auto row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    std::unique_ptr<Statement> st;
    TESSERA_RETURN_IF_ERROR(Prepare(sql, &st));
    int rc;
    while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) TESSERA_RETURN_IF_ERROR(row(st->get()));
    if (rc != SQLITE_DONE) return Error("load jobs");
    return absl::OkStatus();
  };
  TESSERA_RETURN_IF_ERROR(run(
      "SELECT num, spec, state, error, created_ms, started_ms, finished_ms, plan, test_accuracy, "
      "test_loss, test_examples, train_seconds FROM jobs ORDER BY num",
      [&](sqlite3_stmt* st) {
        JobRecord r;
        const int64_t num = sqlite3_column_int64(st, 0);
        r.id = absl::StrCat("job-", num);
        if (!r.spec.ParseFromString(ColumnBlob(st, 1))) {
          return absl::DataLossError(
              absl::StrCat("job database ", path_, ": ", r.id, " has a corrupt spec"));
        }
        r.state = static_cast<JobState>(sqlite3_column_int(st, 2));
        if (!JobState_IsValid(r.state)) {
          return absl::DataLossError(
              absl::StrCat("job database ", path_, ": ", r.id, " has an unknown state"));
        }
        r.error = ColumnText(st, 3);
        r.created_ms = sqlite3_column_int64(st, 4);
        r.started_ms = sqlite3_column_int64(st, 5);
        r.finished_ms = sqlite3_column_int64(st, 6);
        if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
          if (!r.plan.ParseFromString(ColumnBlob(st, 7))) {
            return absl::DataLossError(
                absl::StrCat("job database ", path_, ": ", r.id, " has a corrupt plan"));
          }
          r.has_plan = true;
        }
        r.test_accuracy = sqlite3_column_double(st, 8);
        r.test_loss = sqlite3_column_double(st, 9);
        r.test_examples = sqlite3_column_int64(st, 10);
        r.train_seconds = sqlite3_column_double(st, 11);
        index[num] = out.size();
        out.push_back(std::move(r));
        return absl::OkStatus();
      }));
  TESSERA_RETURN_IF_ERROR(run(
      "SELECT job, idx, name, address FROM job_servers ORDER BY job, idx", [&](sqlite3_stmt* st) {
        auto it = index.find(sqlite3_column_int64(st, 0));
        if (it == index.end()) return absl::OkStatus();
        out[it->second].servers.push_back({ColumnText(st, 2), ColumnText(st, 3)});
        return absl::OkStatus();
      }));
  TESSERA_RETURN_IF_ERROR(run(
      "SELECT job, rank, worker, state, test_correct, test_examples, test_loss_sum, "
      "train_seconds FROM job_tasks ORDER BY job, rank",
      [&](sqlite3_stmt* st) {
        auto it = index.find(sqlite3_column_int64(st, 0));
        if (it == index.end()) return absl::OkStatus();
        JobRecord& r = out[it->second];
        const int state = sqlite3_column_int(st, 3);
        if (sqlite3_column_int64(st, 1) != static_cast<int64_t>(r.tasks.size()) || state < 0 ||
            state > static_cast<int>(TaskState::kDead)) {
          return absl::DataLossError(
              absl::StrCat("job database ", path_, ": ", r.id, " has corrupt task rows"));
        }
        TaskRecord t;
        t.worker = ColumnText(st, 2);
        t.state = static_cast<TaskState>(state);
        t.test_correct = sqlite3_column_int64(st, 4);
        t.test_examples = sqlite3_column_int64(st, 5);
        t.test_loss_sum = sqlite3_column_double(st, 6);
        t.train_seconds = sqlite3_column_double(st, 7);
        r.tasks.push_back(std::move(t));
        return absl::OkStatus();
      }));
  return out;
}

absl::Status JobStore::AppendMetric(const std::string& job_id, int rank, const WorkerProgress& p,
                                    double wall_seconds) {
  TESSERA_ASSIGN_OR_RETURN(const int64_t num, JobNumber(job_id));
  absl::MutexLock lock(&mu_);
  Statement::Use use(insert_metric_.get());
  insert_metric_->Int(1, num);
  insert_metric_->Int(2, rank);
  insert_metric_->Int(3, p.step());
  insert_metric_->Int(4, p.epoch());
  insert_metric_->Real(5, wall_seconds);
  insert_metric_->Real(6, p.loss());
  insert_metric_->Real(7, p.accuracy());
  if (sqlite3_step(insert_metric_->get()) != SQLITE_DONE) return Error("insert metric");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<MetricPoint>> JobStore::Metrics(const std::string& job_id,
                                                           int64_t after_step) {
  TESSERA_ASSIGN_OR_RETURN(const int64_t num, JobNumber(job_id));
  absl::MutexLock lock(&mu_);
  Statement::Use use(select_metrics_.get());
  select_metrics_->Int(1, num);
  select_metrics_->Int(2, after_step);
  std::vector<MetricPoint> out;
  int rc;
  sqlite3_stmt* st = select_metrics_->get();
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    MetricPoint p;
    p.set_step(sqlite3_column_int64(st, 0));
    p.set_epoch(sqlite3_column_int(st, 1));
    p.set_wall_seconds(sqlite3_column_double(st, 2));
    p.set_loss(static_cast<float>(sqlite3_column_double(st, 3)));
    p.set_accuracy(static_cast<float>(sqlite3_column_double(st, 4)));
    out.push_back(p);
  }
  if (rc != SQLITE_DONE) return Error("read metrics");
  return out;
}

}  // namespace tessera::scheduler
