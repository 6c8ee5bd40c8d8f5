// Optional Eigen adapter: append and attend with Eigen matrices instead of raw pointers. The only
// logquant header that includes Eigen; the core never needs it. Shapes are checked and a mismatch
// throws logquant::InvalidArgument naming the argument and the expected shape.
//
//   keys, values: (n, kv_heads * head_dim) row-major, one row per token, heads side by side.
//   queries:      (q_heads, head_dim) row-major, one row per query head; the result has its shape.
#pragma once

#include <Eigen/Core>
#include <string>

#include "kv_cache.hpp"

namespace logquant {

using RowMajorMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {
inline std::string shape(Eigen::Index rows, Eigen::Index cols) {
  return "(" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
}
}  // namespace detail

/// Appends keys.rows() tokens. Both matrices must be (n, kv_heads * head_dim), row-major and
/// contiguous (an Eigen::Ref to such a block also works).
template <class Selector>
void append(KVCache<Selector>& cache, const Eigen::Ref<const RowMajorMatrixXf>& keys,
            const Eigen::Ref<const RowMajorMatrixXf>& values) {
  const auto width = static_cast<Eigen::Index>(cache.config().kv_heads * cache.config().head_dim);
  detail::require(keys.cols() == width && keys.outerStride() == width, [&] {
    return "append: keys has shape " + detail::shape(keys.rows(), keys.cols()) +
           ", expected (n, kv_heads * head_dim = " + std::to_string(width) + "), contiguous rows";
  });
  detail::require(values.rows() == keys.rows() && values.cols() == width &&
                      values.outerStride() == width,
                  [&] {
                    return "append: values has shape " + detail::shape(values.rows(), values.cols()) +
                           ", expected the keys' shape " + detail::shape(keys.rows(), width);
                  });
  cache.append(keys.data(), values.data(), static_cast<std::size_t>(keys.rows()));
}

/// Decode attention for queries of shape (q_heads, head_dim); returns the same shape.
template <class Selector>
RowMajorMatrixXf attend(const KVCache<Selector>& cache,
                        const Eigen::Ref<const RowMajorMatrixXf>& queries, float scale) {
  const auto dim = static_cast<Eigen::Index>(cache.config().head_dim);
  detail::require(queries.cols() == dim && queries.outerStride() == dim && queries.rows() > 0, [&] {
    return "attend: queries has shape " + detail::shape(queries.rows(), queries.cols()) +
           ", expected (q_heads, head_dim = " + std::to_string(dim) + "), contiguous rows";
  });
  RowMajorMatrixXf out(queries.rows(), dim);
  cache.attend(queries.data(), static_cast<std::size_t>(queries.rows()), out.data(), scale);
  return out;
}

}  // namespace logquant
