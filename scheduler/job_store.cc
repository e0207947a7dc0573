#include "scheduler/job_store.h"

#include <sqlite3.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace tessera::scheduler {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  num INTEGER PRIMARY KEY AUTOINCREMENT,
  spec BLOB NOT NULL,
  state INTEGER NOT NULL,
  error TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL DEFAULT 0,
  started_ms INTEGER NOT NULL DEFAULT 0,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  workers TEXT NOT NULL DEFAULT '',
  servers TEXT NOT NULL DEFAULT '',
  server_addresses TEXT NOT NULL DEFAULT '',
  plan BLOB,
  test_accuracy REAL NOT NULL DEFAULT 0,
  test_loss REAL NOT NULL DEFAULT 0,
  test_examples INTEGER NOT NULL DEFAULT 0,
  train_seconds REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS job_metrics (
  job INTEGER NOT NULL,
  rank INTEGER NOT NULL,
  step INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  wall_seconds REAL NOT NULL,
  loss REAL NOT NULL,
  accuracy REAL NOT NULL);
CREATE INDEX IF NOT EXISTS job_metrics_by_job ON job_metrics(job, step);
)sql";

// "job-12" -> 12.
absl::StatusOr<int64_t> JobNumber(const std::string& id) {
  int64_t n = 0;
  if (id.rfind("job-", 0) != 0 || !absl::SimpleAtoi(id.substr(4), &n)) {
    return absl::NotFoundError(absl::StrCat("no job '", id, "' (job ids look like job-1)"));
  }
  return n;
}

// A prepared statement finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }
  void Text(int i, const std::string& s) { sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
  void Blob(int i, const std::string& s) { sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
  void Int(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Real(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  std::string ColumnBytes(int i) {
    const void* p = sqlite3_column_blob(stmt_, i);
    return p ? std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, i)) : std::string();
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

std::vector<std::string> SplitList(const std::string& s) {
  if (s.empty()) return {};
  return absl::StrSplit(s, ',');
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("cannot open job database ", path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<JobStore> store(new JobStore(path, db));
  absl::MutexLock lock(&store->mu_);
  TESSERA_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  TESSERA_RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL"));
  TESSERA_RETURN_IF_ERROR(store->Exec(kSchema));
  return store;
}

JobStore::~JobStore() { sqlite3_close(db_); }

absl::Status JobStore::Error(const char* what) {
  return absl::UnavailableError(absl::StrCat("job database ", path_, ": ", what, ": ", sqlite3_errmsg(db_)));
}

absl::Status JobStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::UnavailableError(absl::StrCat("job database ", path_, ": ", msg));
  }
  return absl::OkStatus();
}

absl::Status JobStore::Insert(JobRecord* record) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "INSERT INTO jobs(spec, state, created_ms) VALUES(?, ?, ?)");
  if (!st.ok()) return Error("prepare insert");
  st.Blob(1, record->spec.SerializeAsString());
  st.Int(2, record->state);
  st.Int(3, record->created_ms);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return Error("insert job");
  record->id = absl::StrCat("job-", sqlite3_last_insert_rowid(db_));
  return absl::OkStatus();
}

absl::Status JobStore::Update(const JobRecord& r) {
  TESSERA_ASSIGN_OR_RETURN(int64_t num, JobNumber(r.id));
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "UPDATE jobs SET spec=?, state=?, error=?, created_ms=?, started_ms=?, finished_ms=?, "
               "workers=?, servers=?, server_addresses=?, plan=?, test_accuracy=?, test_loss=?, "
               "test_examples=?, train_seconds=? WHERE num=?");
  if (!st.ok()) return Error("prepare update");
  st.Blob(1, r.spec.SerializeAsString());
  st.Int(2, r.state);
  st.Text(3, r.error);
  st.Int(4, r.created_ms);
  st.Int(5, r.started_ms);
  st.Int(6, r.finished_ms);
  st.Text(7, absl::StrJoin(r.worker_names, ","));
  st.Text(8, absl::StrJoin(r.server_names, ","));
  st.Text(9, absl::StrJoin(r.server_addresses, ","));
  if (r.has_plan) st.Blob(10, r.plan.SerializeAsString());
  st.Real(11, r.test_accuracy);
  st.Real(12, r.test_loss);
  st.Int(13, r.test_examples);
  st.Real(14, r.train_seconds);
  st.Int(15, num);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return Error("update job");
  if (sqlite3_changes(db_) != 1) return absl::NotFoundError(absl::StrCat("no job '", r.id, "'"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobRecord>> JobStore::LoadAll() {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "SELECT num, spec, state, error, created_ms, started_ms, finished_ms, workers, servers, "
               "server_addresses, plan, test_accuracy, test_loss, test_examples, train_seconds "
               "FROM jobs ORDER BY num");
  if (!st.ok()) return Error("prepare load");
  std::vector<JobRecord> out;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    JobRecord r;
    r.id = absl::StrCat("job-", sqlite3_column_int64(st.get(), 0));
    if (!r.spec.ParseFromString(st.ColumnBytes(1))) {
      return absl::DataLossError(absl::StrCat("job database ", path_, ": ", r.id, " has a corrupt spec"));
    }
    r.state = static_cast<JobState>(sqlite3_column_int(st.get(), 2));
    r.error = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 3));
    r.created_ms = sqlite3_column_int64(st.get(), 4);
    r.started_ms = sqlite3_column_int64(st.get(), 5);
    r.finished_ms = sqlite3_column_int64(st.get(), 6);
    r.worker_names = SplitList(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 7)));
    r.server_names = SplitList(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 8)));
    r.server_addresses = SplitList(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 9)));
    if (sqlite3_column_type(st.get(), 10) != SQLITE_NULL) {
      r.has_plan = r.plan.ParseFromString(st.ColumnBytes(10));
    }
    r.test_accuracy = sqlite3_column_double(st.get(), 11);
    r.test_loss = sqlite3_column_double(st.get(), 12);
    r.test_examples = sqlite3_column_int64(st.get(), 13);
    r.train_seconds = sqlite3_column_double(st.get(), 14);
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return Error("load jobs");
  return out;
}

absl::Status JobStore::AppendMetric(const std::string& job_id, int rank, const WorkerProgress& p,
                                    double wall_seconds) {
  TESSERA_ASSIGN_OR_RETURN(int64_t num, JobNumber(job_id));
  absl::MutexLock lock(&mu_);
  Statement st(db_, "INSERT INTO job_metrics VALUES(?, ?, ?, ?, ?, ?, ?)");
  if (!st.ok()) return Error("prepare metric");
  st.Int(1, num);
  st.Int(2, rank);
  st.Int(3, p.step());
  st.Int(4, p.epoch());
  st.Real(5, wall_seconds);
  st.Real(6, p.loss());
  st.Real(7, p.accuracy());
  if (sqlite3_step(st.get()) != SQLITE_DONE) return Error("insert metric");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<MetricPoint>> JobStore::Metrics(const std::string& job_id, int64_t after_step) {
  TESSERA_ASSIGN_OR_RETURN(int64_t num, JobNumber(job_id));
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "SELECT step, MAX(epoch), MAX(wall_seconds), AVG(loss), AVG(accuracy) FROM job_metrics "
               "WHERE job=? AND step>? GROUP BY step ORDER BY step");
  if (!st.ok()) return Error("prepare metrics");
  st.Int(1, num);
  st.Int(2, after_step);
  std::vector<MetricPoint> out;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    MetricPoint p;
    p.set_step(sqlite3_column_int64(st.get(), 0));
    p.set_epoch(sqlite3_column_int(st.get(), 1));
    p.set_wall_seconds(sqlite3_column_double(st.get(), 2));
    p.set_loss(static_cast<float>(sqlite3_column_double(st.get(), 3)));
    p.set_accuracy(static_cast<float>(sqlite3_column_double(st.get(), 4)));
    out.push_back(p);
  }
  if (rc != SQLITE_DONE) return Error("read metrics");
  return out;
}

}  // namespace tessera::scheduler
