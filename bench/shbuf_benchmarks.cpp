// Google Benchmark suite over the kernels in bench_cases.h. The reported time
// is the create, attach or map; the counters add the free, detach or unmap
// and the cost per page. `shbuf bench` runs the same kernels interleaved, with targets.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "bench_cases.h"

namespace {

using shbuf::AllocMode;
using shbuf::bench::Bench;
using shbuf::bench::Impl;
using shbuf::bench::Op;
using shbuf::bench::Use;

Bench& env() {
  static std::unique_ptr<Bench> bench = [] {
    auto b = Bench::open();
    if (!b.ok()) {
      std::fprintf(stderr, "shbuf_benchmarks: %s\n", b.error().describe().c_str());
      std::exit(1);
    }
    return std::move(b).value();
  }();
  return *bench;
}

void run(benchmark::State& state, Op op, AllocMode mode, Impl impl, Use use) {
  const auto n = static_cast<std::size_t>(state.range(0));
  double release_ns = 0;
  for (auto _ : state) {
    auto s = env().run(op, mode, impl, n, use);
    if (!s.ok()) {
      state.SkipWithError(s.error().describe().c_str());
      return;
    }
    state.SetIterationTime(s->acquire_ns * 1e-9);
    release_ns += s->release_ns;
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["pages"] = static_cast<double>(n);
  state.counters["ns_per_page"] =
      benchmark::Counter(static_cast<double>(n) * iters, benchmark::Counter::kIsRate |
                                                             benchmark::Counter::kInvert);
  state.counters["release_ns"] = release_ns / iters;
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

void register_all() {
  const struct {
    const char* name;
    Op op;
    AllocMode mode;
    Use use;
  } ops[] = {
      {"FrontendCreate/frontend-alloc", Op::kCreate, AllocMode::kFrontend, Use::kRepeated},
      {"FrontendCreate/backend-alloc", Op::kCreate, AllocMode::kBackend, Use::kRepeated},
      {"BackendAttach/frontend-alloc", Op::kAttach, AllocMode::kFrontend, Use::kRepeated},
      {"BackendAttach/frontend-alloc/first-time", Op::kAttach, AllocMode::kFrontend, Use::kFirst},
      {"BackendAttach/backend-alloc", Op::kAttach, AllocMode::kBackend, Use::kRepeated},
      {"BackendAttach/backend-alloc/first-time", Op::kAttach, AllocMode::kBackend, Use::kFirst},
      {"FrontendMap/backend-alloc", Op::kMap, AllocMode::kBackend, Use::kRepeated},
      {"FrontendMap/backend-alloc/first-time", Op::kMap, AllocMode::kBackend, Use::kFirst},
  };
  for (const auto& o : ops) {
    for (const Impl impl : {Impl::kOurs, Impl::kLimit, Impl::kNaive}) {
      const std::string name = std::string(o.name) + "/" + shbuf::bench::to_string(impl);
      auto* b = benchmark::RegisterBenchmark(name.c_str(), [o, impl](benchmark::State& s) {
        run(s, o.op, o.mode, impl, o.use);
      });
      b->UseManualTime()->Unit(benchmark::kMicrosecond)->Arg(1)->Arg(1024)->Arg(16384);
      // One naive pass at 1 GiB takes seconds: once is enough.
      if (impl == Impl::kNaive) {
        b->Iterations(1);
      } else {
        b->Arg(262144);
      }
    }
  }
  // The naive path at 1 GiB, once.
  for (const auto& o : ops) {
    const std::string name = std::string(o.name) + "/naive-1GiB";
    benchmark::RegisterBenchmark(name.c_str(),
                                 [o](benchmark::State& s) { run(s, o.op, o.mode, Impl::kNaive, o.use); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Arg(262144)
        ->Iterations(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
