// Native CPU kernels of kantk's uniform B-spline layer (see kantk/bases/_native.py).
//
// Plain C ABI over raw pointers, called through ctypes, with no PyTorch headers, so that it
// compiles in about a second on first use. Every kernel is the fused form of a chain of
// element-wise PyTorch passes in kantk/bases/_bspline_kernels.py and gives the same values;
// the GEMMs stay in PyTorch.
//
// Conventions (as in _bspline_kernels.py): an input x of column i sits at u = x * inv_h[i] +
// shift[i] grid units from one knot before the first; u is clamped to [0, n + order + 1]; its
// table row is R = floor(u) (interval R - 1 of the extended grid; for "extend" R is clamped to
// [order + 1, n]) and t = u - R. The order + 1 non-zero bases are R - 1 - order + r, r = 0..order,
// with value sum_p C[p][r] t^p and derivative (grid units) sum_p C[p][order + 1 + r] t^p; a
// basis index outside [0, n) does not exist (value 0). A NaN input gives NaN.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr int kMaxOrder = 15;

// Run fn(begin, end) over [0, rows) split into at most nthreads contiguous parts; small jobs
// run on the calling thread alone. Built with OpenMP, the parts run on the OpenMP thread pool,
// which is PyTorch's own (its libgomp is already loaded, so this library binds to it) and whose
// threads are awake right after a GEMM; new threads per call would compete with them instead.
template <typename F>
void parallel_rows(int64_t rows, int nthreads, int64_t min_rows, F fn) {
  const int64_t parts =
      std::max<int64_t>(1, std::min<int64_t>(nthreads, rows / std::max<int64_t>(1, min_rows)));
  if (parts <= 1) {
    fn(int64_t(0), rows);
    return;
  }
  const int64_t step = (rows + parts - 1) / parts;
#ifdef _OPENMP
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1)
  for (int64_t w = 0; w < parts; ++w) {
    const int64_t a = w * step, b = std::min(rows, a + step);
    if (a < b) fn(a, b);
  }
#else
  std::vector<std::thread> workers;
  for (int64_t w = 1; w < parts; ++w) {
    const int64_t a = w * step, b = std::min(rows, a + step);
    if (a < b) workers.emplace_back(fn, a, b);
  }
  fn(int64_t(0), std::min(rows, step));
  for (auto& th : workers) th.join();
#endif
}

template <typename T>
struct Spline {
  int n, order, extend;
  T c[kMaxOrder + 1][2 * (kMaxOrder + 1)];  // c[p][col]: value cols 0..order, derivative cols after

  Spline(int n_, int order_, int extend_, const double* coefs) : n(n_), order(order_), extend(extend_) {
    const int cols = 2 * (order + 1);
    for (int p = 0; p <= order; ++p)
      for (int col = 0; col < cols; ++col) c[p][col] = static_cast<T>(coefs[p * cols + col]);
  }

  // Table row of u (finite or +-inf) and t; false for NaN.
  inline bool locate(T x, T shift, T inv_h, int& row, T& t) const {
    T u = shift + x * inv_h;
    if (std::isnan(u)) return false;
    const T top = static_cast<T>(n + order + 1);
    u = u < T(0) ? T(0) : (u > top ? top : u);
    T f = std::floor(u);
    row = static_cast<int>(f);
    if (extend) {
      row = std::min(std::max(row, order + 1), n);
      f = static_cast<T>(row);
    }
    t = u - f;
    return true;
  }

  template <int K>
  inline void values(T t, T* v, int col0) const {  // v[r] = sum_p c[p][col0 + r] t^p
    const int k = K >= 0 ? K : order;
    for (int r = 0; r <= k; ++r) {
      T acc = c[k][col0 + r];
      for (int p = k - 1; p >= 0; --p) acc = acc * t + c[p][col0 + r];
      v[r] = acc;
    }
  }
};

constexpr int kBlock = 64;  // inputs located and evaluated together (vectorised loops)

// Table rows and the order + 1 local values (col0 = 0) or derivatives (col0 = order + 1) of
// inputs x[0..m) of columns i0..i0+m. A NaN input gets NaN values at row order + 1 (bases
// 0..order), so that its output is NaN.
template <typename T, int K>
inline void evaluate_block(const Spline<T>& s, const T* x, const T* shift, const T* inv_h, int m, int col0,
                           T* rows, T (*v)[kBlock]) {
  const int k = K >= 0 ? K : s.order;
  const T top = static_cast<T>(s.n + s.order + 1);
  const T row_lo = static_cast<T>(s.extend ? s.order + 1 : 0);
  const T row_hi = static_cast<T>(s.extend ? s.n : s.n + s.order + 1);
  const T nan_row = static_cast<T>(s.order + 1);
  T tb[kBlock];
  for (int j = 0; j < m; ++j) {
    const T u = shift[j] + x[j] * inv_h[j];
    const T uc = u < T(0) ? T(0) : (u > top ? top : u);  // NaN passes through
    T f = std::floor(uc);
    f = f < row_lo ? row_lo : (f > row_hi ? row_hi : f);
    tb[j] = uc - f;
    rows[j] = u == u ? f : nan_row;  // kept as T: the selects below then vectorise
  }
  for (int r = 0; r <= k; ++r) {
    T c[kMaxOrder + 1];
    for (int p = 0; p <= k; ++p) c[p] = s.c[p][col0 + r];
    for (int j = 0; j < m; ++j) {
      const T t = tb[j];
      T acc = c[k];
      for (int p = k - 1; p >= 0; --p) acc = acc * t + c[p];
      if (k == 0) acc += t * T(0);  // a constant piece: still NaN for a NaN input
      v[r][j] = acc;
    }
  }
}

// Value of basis q for input j of a block: v[q - first_j][j], 0 where q is not one of the
// order + 1 local bases (first_j = rows[j] - 1 - order). Float compares and selects only, so
// the loop over j vectorises (an integer switch here compiles to branches).
template <typename T, int K>
inline T pick(const T (*v)[kBlock], int k, T q1k, const T* rows, int j) {
  const T r = q1k - rows[j];
  T val = T(0);
  for (int rr = 0; rr <= (K >= 0 ? K : k); ++rr) {
    const T cand = v[rr][j];
    val = r == static_cast<T>(rr) ? cand : val;
  }
  return val;
}

// dense[b, q, i] = basis q of x[b, i] for q < n; dense[b, n, i] = extra[b, i] when extra is
// given (width = n + 1), else width = n. Basis-major rows: every loop runs along the inputs.
template <typename T, int K>
void fill_dense(const T* x, const T* shift, const T* inv_h, const T* extra, int64_t rows, int64_t n_in,
                const Spline<T>& s, T* dense, int nthreads) {
  const int n = s.n, k = s.order;
  const int64_t width = n + (extra != nullptr);
  parallel_rows(rows, nthreads, 16, [&](int64_t a, int64_t b) {
    T v[kMaxOrder + 1][kBlock];
    T rb[kBlock];
    for (int64_t bi = a; bi < b; ++bi) {
      T* d = dense + bi * width * n_in;
      for (int64_t i0 = 0; i0 < n_in; i0 += kBlock) {
        const int m = static_cast<int>(std::min<int64_t>(kBlock, n_in - i0));
        const int64_t e0 = bi * n_in + i0;
        evaluate_block<T, K>(s, x + e0, shift + i0, inv_h + i0, m, 0, rb, v);
        for (int q = 0; q < n; ++q) {
          T* dq = d + q * n_in + i0;
          const T q1k = static_cast<T>(q + 1 + k);
          for (int j = 0; j < m; ++j) dq[j] = pick<T, K>(v, k, q1k, rb, j);
        }
        if (extra) std::memcpy(d + n * n_in + i0, extra + e0, sizeof(T) * m);
      }
    }
  });
}

// grad_x[b, i] = inv_h[i] * sum_q grad_dense[b, q, i] * dB_q/du (x[b, i]); grad_extra[b, i] =
// grad_dense[b, n, i] (when given: width = n + 1; otherwise width as passed).
template <typename T, int K>
void grad_input(const T* x, const T* shift, const T* inv_h, const T* grad_dense, int64_t rows, int64_t n_in,
                int64_t width, const Spline<T>& s, T* grad_x, T* grad_extra, int nthreads) {
  const int n = s.n, k = s.order;
  parallel_rows(rows, nthreads, 16, [&](int64_t a, int64_t b) {
    T dv[kMaxOrder + 1][kBlock];
    T acc[kBlock];
    T rb[kBlock];
    for (int64_t bi = a; bi < b; ++bi) {
      const T* g = grad_dense + bi * width * n_in;
      for (int64_t i0 = 0; i0 < n_in; i0 += kBlock) {
        const int m = static_cast<int>(std::min<int64_t>(kBlock, n_in - i0));
        const int64_t e0 = bi * n_in + i0;
        if (grad_extra) std::memcpy(grad_extra + e0, g + n * n_in + i0, sizeof(T) * m);
        if (!grad_x) continue;
        evaluate_block<T, K>(s, x + e0, shift + i0, inv_h + i0, m, k + 1, rb, dv);
        for (int j = 0; j < m; ++j) acc[j] = T(0);
        for (int q = 0; q < n; ++q) {
          const T* gq = g + q * n_in + i0;
          const T q1k = static_cast<T>(q + 1 + k);
          for (int j = 0; j < m; ++j) acc[j] += gq[j] * pick<T, K>(dv, k, q1k, rb, j);
        }
        for (int j = 0; j < m; ++j) grad_x[e0 + j] = acc[j] * inv_h[i0 + j];
      }
    }
  });
}

// w[o, q, i] = coef[o, i, q] * scale[o, i] for q < n; w[o, n, i] = extra_w[o, i] when given.
// The layer's weight composition and the basis-major transpose in one pass.
template <typename T>
void compose_weight(const T* coef, const T* scale, const T* extra_w, int64_t out, int64_t n_in, int n, T* w,
                    int nthreads) {
  const int64_t width = n + (extra_w != nullptr);
  parallel_rows(out, nthreads, 8, [&](int64_t a, int64_t b) {
    for (int64_t o = a; o < b; ++o) {
      const T* c = coef + o * n_in * n;
      const T* sc = scale + o * n_in;
      T* wo = w + o * width * n_in;
      for (int q = 0; q < n; ++q)
        for (int64_t i = 0; i < n_in; ++i) wo[q * n_in + i] = c[i * n + q] * sc[i];
      if (extra_w) std::memcpy(wo + n * n_in, extra_w + o * n_in, sizeof(T) * n_in);
    }
  });
}

// The gradients of compose_weight from grad_w (out, width, in): grad_coef[o, i, q] =
// grad_w[o, q, i] * scale[o, i]; grad_scale[o, i] = sum_q grad_w[o, q, i] * coef[o, i, q];
// grad_extra_w[o, i] = grad_w[o, n, i]. Null outputs are skipped.
template <typename T>
void compose_weight_grad(const T* grad_w, const T* coef, const T* scale, int64_t out, int64_t n_in, int n,
                         int64_t width, T* grad_coef, T* grad_scale, T* grad_extra_w, int nthreads) {
  parallel_rows(out, nthreads, 8, [&](int64_t a, int64_t b) {
    for (int64_t o = a; o < b; ++o) {
      const T* g = grad_w + o * width * n_in;
      const T* c = coef + o * n_in * n;
      const T* sc = scale + o * n_in;
      if (grad_coef) {
        T* gc = grad_coef + o * n_in * n;
        for (int64_t i = 0; i < n_in; ++i)
          for (int q = 0; q < n; ++q) gc[i * n + q] = g[q * n_in + i] * sc[i];
      }
      if (grad_scale) {
        T* gs = grad_scale + o * n_in;
        for (int64_t i = 0; i < n_in; ++i) {
          T acc = T(0);
          for (int q = 0; q < n; ++q) acc += g[q * n_in + i] * c[i * n + q];
          gs[i] = acc;
        }
      }
      if (grad_extra_w) std::memcpy(grad_extra_w + o * n_in, g + n * n_in, sizeof(T) * n_in);
    }
  });
}

// ---- The sparse path (large grids): only the order + 1 local coefficients per input ----------
//
// Work is split by input column i. For one column the kernel lays out its weight rows
// wt[q][o] = coef[o, i, q] * scale[o, i] (padded with order + 1 zero rows each side so that every
// local basis index lands in the buffer) in a buffer that stays in cache, then runs over the
// batch: y[b, :] += sum_r v_r wt[first + r] (forward), or grad_x from order + 1 dot products and
// the coefficient gradient as order + 1 row updates (backward). Time does not grow with G but for
// one pass over coef (and one write of grad_coef).

template <typename T>
struct ColumnWeights {  // the padded (n + 2 (order + 1), n_out) rows of one input column
  int64_t n_out;
  int pad, n;
  std::vector<T> buf;
  ColumnWeights(int64_t n_out_, int n_, int order) : n_out(n_out_), pad(order + 1), n(n_), buf((n_ + 2 * (order + 1)) * n_out_, T(0)) {}
  T* row(int q) { return buf.data() + (q + pad) * n_out; }  // q in [-pad, n + pad)
  void load(const T* coef, const T* scale, int64_t n_in, int64_t i) {
    for (int64_t o = 0; o < n_out; ++o) {
      const T* c = coef + (o * n_in + i) * n;
      const T so = scale[o * n_in + i];
      for (int q = 0; q < n; ++q) row(q)[o] = c[q] * so;
    }
  }
};

// Locate and evaluate x[b, i] for b in [b0, b0 + m) (a strided column).
template <typename T, int K>
inline void evaluate_column(const Spline<T>& s, const T* x, int64_t n_in, int64_t i, int64_t b0, int m,
                            T shift, T inv_h, int col0, T* rows, T (*v)[kBlock]) {
  T xs[kBlock], sh[kBlock], ih[kBlock];
  for (int j = 0; j < m; ++j) {
    xs[j] = x[(b0 + j) * n_in + i];
    sh[j] = shift;
    ih[j] = inv_h;
  }
  evaluate_block<T, K>(s, xs, sh, ih, m, col0, rows, v);
}

// Split [0, n_in) over the threads; fn(thread, i) for each column.
template <typename F>
void parallel_columns(int64_t n_in, int nthreads, F fn) {
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, n_in)));
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n_in; ++i) fn(omp_get_thread_num(), i);
#else
  (void)nt;
  for (int64_t i = 0; i < n_in; ++i) fn(0, i);
#endif
}

// y[b, o] = sum_i scale[o, i] sum_q coef[o, i, q] B_q(x[b, i]).
template <typename T, int K>
void sparse_forward(const T* x, const T* shift, const T* inv_h, const T* coef, const T* scale, int64_t rows,
                    int64_t n_in, int64_t n_out, const Spline<T>& s, T* y, int nthreads) {
  const int k = s.order;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, n_in)));
  std::vector<std::vector<T>> partial(nt);  // one (rows, n_out) sum per thread
  parallel_columns(n_in, nt, [&](int tid, int64_t i) {
    std::vector<T>& acc = partial[tid];
    if (acc.empty()) acc.assign(rows * n_out, T(0));
    ColumnWeights<T> w(n_out, s.n, k);
    w.load(coef, scale, n_in, i);
    T v[kMaxOrder + 1][kBlock];
    T rb[kBlock];
    for (int64_t b0 = 0; b0 < rows; b0 += kBlock) {
      const int m = static_cast<int>(std::min<int64_t>(kBlock, rows - b0));
      evaluate_column<T, K>(s, x, n_in, i, b0, m, shift[i], inv_h[i], 0, rb, v);
      for (int j = 0; j < m; ++j) {
        T* yb = acc.data() + (b0 + j) * n_out;
        const int first = static_cast<int>(rb[j]) - 1 - k;
        for (int r = 0; r <= k; ++r) {
          const T vr = v[r][j];
          const T* wr = w.row(first + r);
          for (int64_t o = 0; o < n_out; ++o) yb[o] += vr * wr[o];
        }
      }
    }
  });
  // y = sum of the threads' parts (threads that got no column left theirs empty)
  parallel_rows(rows, nthreads, 16, [&](int64_t a, int64_t b) {
    for (int64_t e = a * n_out; e < b * n_out; ++e) {
      T sum = T(0);
      for (int t = 0; t < nt; ++t)
        if (!partial[t].empty()) sum += partial[t][e];
      y[e] = sum;
    }
  });
}

// From g = dL/dy (rows, n_out): grad_x[b, i] = inv_h[i] sum_q dB_q/du (x[b, i]) sum_o g[b, o] w[o, i, q]
// (w = coef * scale), grad_coef[o, i, q] = scale[o, i] sum_b g[b, o] B_q(x[b, i]) and
// grad_scale[o, i] = sum_q coef[o, i, q] sum_b g[b, o] B_q(x[b, i]). Null outputs are skipped.
template <typename T, int K>
void sparse_backward(const T* x, const T* shift, const T* inv_h, const T* coef, const T* scale, const T* g,
                     int64_t rows, int64_t n_in, int64_t n_out, const Spline<T>& s, T* grad_x, T* grad_coef,
                     T* grad_scale, int nthreads) {
  const int k = s.order, n = s.n;
  const bool need_w = grad_coef != nullptr || grad_scale != nullptr;
  parallel_columns(n_in, nthreads, [&](int, int64_t i) {
    ColumnWeights<T> w(n_out, n, k), acc(n_out, n, k);
    if (grad_x) w.load(coef, scale, n_in, i);
    T v[kMaxOrder + 1][kBlock], dv[kMaxOrder + 1][kBlock];
    T rb[kBlock];
    for (int64_t b0 = 0; b0 < rows; b0 += kBlock) {
      const int m = static_cast<int>(std::min<int64_t>(kBlock, rows - b0));
      if (need_w) evaluate_column<T, K>(s, x, n_in, i, b0, m, shift[i], inv_h[i], 0, rb, v);
      if (grad_x) evaluate_column<T, K>(s, x, n_in, i, b0, m, shift[i], inv_h[i], k + 1, rb, dv);
      for (int j = 0; j < m; ++j) {
        const T* gb = g + (b0 + j) * n_out;
        const int first = static_cast<int>(rb[j]) - 1 - k;
        if (grad_x) {
          T sum = T(0);
          for (int r = 0; r <= k; ++r) {
            const T* wr = w.row(first + r);
            T dot = T(0);
            for (int64_t o = 0; o < n_out; ++o) dot += gb[o] * wr[o];
            sum += dv[r][j] * dot;
          }
          grad_x[(b0 + j) * n_in + i] = sum * inv_h[i];
        }
        if (need_w) {
          for (int r = 0; r <= k; ++r) {
            const T vr = v[r][j];
            T* ar = acc.row(first + r);
            for (int64_t o = 0; o < n_out; ++o) ar[o] += vr * gb[o];
          }
        }
      }
    }
    if (!need_w) return;
    for (int64_t o = 0; o < n_out; ++o) {
      const T* c = coef + (o * n_in + i) * n;
      const T so = scale[o * n_in + i];
      T* gc = grad_coef ? grad_coef + (o * n_in + i) * n : nullptr;
      T gs = T(0);
      for (int q = 0; q < n; ++q) {
        const T a = acc.row(q)[o];
        if (gc) gc[q] = a * so;
        gs += a * c[q];
      }
      if (grad_scale) grad_scale[o * n_in + i] = gs;
    }
  });
}

template <typename T>
int dispatch_sparse_forward(const T* x, const T* shift, const T* inv_h, const T* coef, const T* scale, int64_t rows,
                            int64_t n_in, int64_t n_out, int n, int order, int extend, const double* coefs, T* y,
                            int nthreads) {
  if (order < 0 || order > kMaxOrder) return 1;
  Spline<T> s(n, order, extend, coefs);
  if (order == 3)
    sparse_forward<T, 3>(x, shift, inv_h, coef, scale, rows, n_in, n_out, s, y, nthreads);
  else
    sparse_forward<T, -1>(x, shift, inv_h, coef, scale, rows, n_in, n_out, s, y, nthreads);
  return 0;
}

template <typename T>
int dispatch_sparse_backward(const T* x, const T* shift, const T* inv_h, const T* coef, const T* scale, const T* g,
                             int64_t rows, int64_t n_in, int64_t n_out, int n, int order, int extend,
                             const double* coefs, T* grad_x, T* grad_coef, T* grad_scale, int nthreads) {
  if (order < 0 || order > kMaxOrder) return 1;
  Spline<T> s(n, order, extend, coefs);
  if (order == 3)
    sparse_backward<T, 3>(x, shift, inv_h, coef, scale, g, rows, n_in, n_out, s, grad_x, grad_coef, grad_scale,
                          nthreads);
  else
    sparse_backward<T, -1>(x, shift, inv_h, coef, scale, g, rows, n_in, n_out, s, grad_x, grad_coef, grad_scale,
                           nthreads);
  return 0;
}

template <typename T>
int dispatch_fill(const T* x, const T* shift, const T* inv_h, const T* extra, int64_t rows, int64_t n_in, int n,
                  int order, int extend, const double* coefs, T* dense, int nthreads) {
  if (order < 0 || order > kMaxOrder) return 1;
  Spline<T> s(n, order, extend, coefs);
  switch (order) {
    case 1: fill_dense<T, 1>(x, shift, inv_h, extra, rows, n_in, s, dense, nthreads); break;
    case 2: fill_dense<T, 2>(x, shift, inv_h, extra, rows, n_in, s, dense, nthreads); break;
    case 3: fill_dense<T, 3>(x, shift, inv_h, extra, rows, n_in, s, dense, nthreads); break;
    default: fill_dense<T, -1>(x, shift, inv_h, extra, rows, n_in, s, dense, nthreads);
  }
  return 0;
}

template <typename T>
int dispatch_grad(const T* x, const T* shift, const T* inv_h, const T* grad_dense, int64_t rows, int64_t n_in,
                  int64_t width, int n, int order, int extend, const double* coefs, T* grad_x, T* grad_extra,
                  int nthreads) {
  if (order < 0 || order > kMaxOrder) return 1;
  Spline<T> s(n, order, extend, coefs);
  switch (order) {
    case 1: grad_input<T, 1>(x, shift, inv_h, grad_dense, rows, n_in, width, s, grad_x, grad_extra, nthreads); break;
    case 2: grad_input<T, 2>(x, shift, inv_h, grad_dense, rows, n_in, width, s, grad_x, grad_extra, nthreads); break;
    case 3: grad_input<T, 3>(x, shift, inv_h, grad_dense, rows, n_in, width, s, grad_x, grad_extra, nthreads); break;
    default: grad_input<T, -1>(x, shift, inv_h, grad_dense, rows, n_in, width, s, grad_x, grad_extra, nthreads);
  }
  return 0;
}

}  // namespace

extern "C" {

int kantk_abi_version() { return 1; }

int kantk_fill_dense_f32(const float* x, const float* shift, const float* inv_h, const float* extra, int64_t rows,
                         int64_t n_in, int n, int order, int extend, const double* coefs, float* dense, int nthreads) {
  return dispatch_fill<float>(x, shift, inv_h, extra, rows, n_in, n, order, extend, coefs, dense, nthreads);
}

int kantk_fill_dense_f64(const double* x, const double* shift, const double* inv_h, const double* extra,
                         int64_t rows, int64_t n_in, int n, int order, int extend, const double* coefs, double* dense,
                         int nthreads) {
  return dispatch_fill<double>(x, shift, inv_h, extra, rows, n_in, n, order, extend, coefs, dense, nthreads);
}

int kantk_grad_input_f32(const float* x, const float* shift, const float* inv_h, const float* grad_dense,
                         int64_t rows, int64_t n_in, int64_t width, int n, int order, int extend, const double* coefs,
                         float* grad_x, float* grad_extra, int nthreads) {
  return dispatch_grad<float>(x, shift, inv_h, grad_dense, rows, n_in, width, n, order, extend, coefs, grad_x,
                              grad_extra, nthreads);
}

int kantk_grad_input_f64(const double* x, const double* shift, const double* inv_h, const double* grad_dense,
                         int64_t rows, int64_t n_in, int64_t width, int n, int order, int extend,
                         const double* coefs, double* grad_x, double* grad_extra, int nthreads) {
  return dispatch_grad<double>(x, shift, inv_h, grad_dense, rows, n_in, width, n, order, extend, coefs, grad_x,
                               grad_extra, nthreads);
}

int kantk_compose_weight_f32(const float* coef, const float* scale, const float* extra_w, int64_t out, int64_t n_in,
                             int n, float* w, int nthreads) {
  compose_weight<float>(coef, scale, extra_w, out, n_in, n, w, nthreads);
  return 0;
}

int kantk_compose_weight_f64(const double* coef, const double* scale, const double* extra_w, int64_t out,
                             int64_t n_in, int n, double* w, int nthreads) {
  compose_weight<double>(coef, scale, extra_w, out, n_in, n, w, nthreads);
  return 0;
}

int kantk_compose_weight_grad_f32(const float* grad_w, const float* coef, const float* scale, int64_t out,
                                  int64_t n_in, int n, int64_t width, float* grad_coef, float* grad_scale,
                                  float* grad_extra_w, int nthreads) {
  compose_weight_grad<float>(grad_w, coef, scale, out, n_in, n, width, grad_coef, grad_scale, grad_extra_w, nthreads);
  return 0;
}

int kantk_compose_weight_grad_f64(const double* grad_w, const double* coef, const double* scale, int64_t out,
                                  int64_t n_in, int n, int64_t width, double* grad_coef, double* grad_scale,
                                  double* grad_extra_w, int nthreads) {
  compose_weight_grad<double>(grad_w, coef, scale, out, n_in, n, width, grad_coef, grad_scale, grad_extra_w,
                              nthreads);
  return 0;
}

#define KANTK_SPARSE(SUFFIX, T)                                                                          \
  int kantk_sparse_forward_##SUFFIX(const T* x, const T* shift, const T* inv_h, const T* coef, const T* scale,   \
                                    int64_t rows, int64_t n_in, int64_t n_out, int n, int order, int extend,    \
                                    const double* coefs, T* y, int nthreads) {                                  \
    return dispatch_sparse_forward<T>(x, shift, inv_h, coef, scale, rows, n_in, n_out, n, order, extend, coefs, \
                                      y, nthreads);                                                             \
  }                                                                                                             \
  int kantk_sparse_backward_##SUFFIX(const T* x, const T* shift, const T* inv_h, const T* coef, const T* scale,  \
                                     const T* g, int64_t rows, int64_t n_in, int64_t n_out, int n, int order,   \
                                     int extend, const double* coefs, T* grad_x, T* grad_coef, T* grad_scale,   \
                                     int nthreads) {                                                            \
    return dispatch_sparse_backward<T>(x, shift, inv_h, coef, scale, g, rows, n_in, n_out, n, order, extend,    \
                                       coefs, grad_x, grad_coef, grad_scale, nthreads);                        \
  }

KANTK_SPARSE(f32, float)
KANTK_SPARSE(f64, double)

}  // extern "C"
