// The optional Eigen adapter: same answers as the pointer API, and shape errors that name the
// argument and the expected shape.
#include <gtest/gtest.h>

#include <string>

#include <logquant/eigen.hpp>
#include <logquant/logquant.hpp>

namespace {

using namespace logquant;

TEST(EigenAdapter, MatchesPointerApi) {
  CacheConfig cfg;
  cfg.head_dim = 16;
  cfg.kv_heads = 2;
  KVCache<LogSelector> a(cfg, LogSelector(4)), b(cfg, LogSelector(4));
  const RowMajorMatrixXf keys = RowMajorMatrixXf::Random(100, 32), values = RowMajorMatrixXf::Random(100, 32);
  append(a, keys, values);
  b.append(keys.data(), values.data(), 100);
  const RowMajorMatrixXf q = RowMajorMatrixXf::Random(4, 16);
  const RowMajorMatrixXf out = attend(a, q, 0.25f);
  RowMajorMatrixXf expect(4, 16);
  b.attend(q.data(), 4, expect.data(), 0.25f);
  EXPECT_EQ(out, expect);
  // A block of rows works too.
  append(a, keys.topRows(10), values.topRows(10));
  EXPECT_EQ(a.size(), 110u);
}

TEST(EigenAdapter, ShapeErrorsNameTheArgument) {
  CacheConfig cfg;
  cfg.head_dim = 16;
  cfg.kv_heads = 2;
  KVCache<FullSelector> cache(cfg, FullSelector());
  auto expect_error = [](auto f, const std::string& needle) {
    try {
      f();
      FAIL() << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { append(cache, RowMajorMatrixXf::Zero(3, 31), RowMajorMatrixXf::Zero(3, 31)); },
               "keys has shape (3, 31)");
  expect_error([&] { append(cache, RowMajorMatrixXf::Zero(3, 32), RowMajorMatrixXf::Zero(2, 32)); },
               "values has shape (2, 32)");
  EXPECT_EQ(cache.size(), 0u);
  append(cache, RowMajorMatrixXf::Ones(3, 32), RowMajorMatrixXf::Ones(3, 32));
  expect_error([&] { attend(cache, RowMajorMatrixXf::Zero(4, 8), 1.0f); }, "queries has shape (4, 8)");
}

}  // namespace
