#include "tools/job_report.h"

#include "gtest/gtest.h"

namespace tessera::tools {
namespace {

TEST(JobReportTest, StatusShowsReadsAndObservedStaleness) {
  JobInfo job;
  job.set_job_id("job-1");
  job.set_state(RUNNING);
  job.mutable_spec()->set_mode(SSP);
  job.mutable_spec()->set_staleness(3);
  for (int rank = 0; rank < 2; ++rank) {
    WorkerProgress* w = job.add_workers();
    w->set_rank(rank);
    w->set_pulls(10);
    w->set_pulls_saved(5);
    w->add_staleness_histogram(6);  // staleness 0
    w->add_staleness_histogram(0);
    w->add_staleness_histogram(9);  // staleness 2
  }
  const std::string text = DescribeJob(job);
  EXPECT_NE(text.find("ssp s=3"), std::string::npos) << text;
  EXPECT_NE(text.find("reads: 20 pulls, 10 served from the SSP cache"), std::string::npos) << text;
  EXPECT_NE(text.find("observed staleness mean 1.20 max 2 (clocks:reads 0:12 2+:18)"),
            std::string::npos)
      << text;
}

TEST(JobReportTest, NoReadsNoStalenessLine) {
  JobInfo job;
  job.set_job_id("job-2");
  job.add_workers()->set_rank(0);
  EXPECT_EQ(DescribeJob(job).find("reads:"), std::string::npos);
}

}  // namespace
}  // namespace tessera::tools
