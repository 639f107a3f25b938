// Native CPU kernels of kantk's uniform B-spline layer (built and loaded by kantk/bases/bspline/native_build.py, called from native.py).
//
// Plain C ABI over raw pointers, called through ctypes, with no PyTorch headers, so that it
// compiles in a few seconds on first use. The dense-path kernels are the fused form of chains
// of element-wise PyTorch passes in kantk/bases/bspline/torch_dense.py (the GEMMs stay in
// PyTorch); the sparse-path kernels do the whole product touching only the order + 1 local
// coefficients per input. All give the PyTorch path's values up to rounding.
//
// Conventions (as in kantk/bases/bspline/local.py): an input x of column i sits at u = x * inv_h[i] +
// shift[i] grid units from one knot before the first; u is clamped to [0, n + order + 1]; its
// table row is R = floor(u) (interval R - 1 of the extended grid; for "extend" R is clamped to
// [order + 1, n]) and t = u - R. The order + 1 non-zero bases are R - 1 - order + r, r = 0..order,
// with value sum_p C[p][r] t^p and derivative (grid units) sum_p C[p][order + 1 + r] t^p; a
// basis index outside [0, n) does not exist (value 0). A NaN input gives NaN.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

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

// One 64-byte SIMD register of T (GCC/Clang vector extension: split into narrower registers
// where the CPU has no 512-bit ones). Used where the auto-vectoriser would not reliably help.
template <typename T>
struct Simd {
  typedef T V __attribute__((vector_size(64)));
  static constexpr int kLanes = 64 / sizeof(T);
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof v); }
  static V splat(T a) { return V{} + a; }  // a broadcast
  static T sum(V v) {  // halve the width twice with vector adds, then add the last lanes
    typedef T H __attribute__((vector_size(32)));
    typedef T Q __attribute__((vector_size(16)));
    H lo, hi;
    std::memcpy(&lo, &v, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
    const H h = lo + hi;
    Q qlo, qhi;
    std::memcpy(&qlo, &h, sizeof qlo);
    std::memcpy(&qhi, reinterpret_cast<const char*>(&h) + sizeof qlo, sizeof qhi);
    const Q q = qlo + qhi;
    T s = T(0);
    for (int l = 0; l < static_cast<int>(sizeof(Q) / sizeof(T)); ++l) s += q[l];
    return s;
  }
};

// rows[t][o] += a[t] * g[o] for o < n_out (distinct rows): one pass over g for all the terms.
template <typename T, int kTerms>
inline void multi_rank1(T* const* rows, const T* a, const T* g, int terms, int64_t n_out) {
  using S = Simd<T>;
  const int nterms = kTerms > 0 ? kTerms : terms;
  typename S::V av[kTerms > 0 ? kTerms : 64];
  for (int t = 0; t < nterms; ++t) av[t] = S::splat(a[t]);
  int64_t o = 0;
  for (; o + S::kLanes <= n_out; o += S::kLanes) {
    const typename S::V gv = S::load(g + o);
    for (int t = 0; t < nterms; ++t) S::store(rows[t] + o, S::load(rows[t] + o) + av[t] * gv);
  }
  for (; o < n_out; ++o)
    for (int t = 0; t < nterms; ++t) rows[t][o] += a[t] * g[o];
}

// In-register transpose of kLanes x kLanes values: r[i][l] -> r[l][i]. For each bit b of the
// index, rows i and i + b (bit b of i clear) swap the lanes where the row and lane bits differ;
// after every bit, element (i, l) sits at (l, i). GCC's __builtin_shuffle; a scalar loop
// elsewhere.
template <typename T>
inline void transpose_tile(typename Simd<T>::V* r) {
  using S = Simd<T>;
  constexpr int L = S::kLanes;
#if defined(__GNUC__) && !defined(__clang__)
  typedef typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type I;
  typedef I M __attribute__((vector_size(64)));
  struct Masks {  // per bit b: the lane sources of rows i and i + b; built once
    M lo[8], hi[8];
    Masks() {
      for (int s = 0, b = 1; b < L; ++s, b <<= 1)
        for (int l = 0; l < L; ++l) {
          lo[s][l] = (l & b) ? L + (l - b) : l;
          hi[s][l] = (l & b) ? L + l : l + b;
        }
    }
  };
  static const Masks masks;
  for (int s = 0, b = 1; b < L; ++s, b <<= 1) {
    const M lo = masks.lo[s], hi = masks.hi[s];
    for (int i = 0; i < L; ++i) {
      if (i & b) continue;
      const typename S::V a = r[i], c = r[i + b];
      r[i] = __builtin_shuffle(a, c, lo);
      r[i + b] = __builtin_shuffle(a, c, hi);
    }
  }
#else
  T tmp[L][L];
  for (int i = 0; i < L; ++i)
    for (int l = 0; l < L; ++l) tmp[l][i] = r[i][l];
  for (int i = 0; i < L; ++i) std::memcpy(&r[i], tmp[i], sizeof(r[i]));
#endif
}

// y[o] += sum_t a[t] * w[t][o] for o < n_out: one pass over y for all the terms.
template <typename T, int kTerms>
inline void multi_axpy(T* y, const T* const* w, const T* a, int terms, int64_t n_out) {
  using S = Simd<T>;
  const int nterms = kTerms > 0 ? kTerms : terms;
  typename S::V av[kTerms > 0 ? kTerms : 64];
  for (int t = 0; t < nterms; ++t) av[t] = S::splat(a[t]);
  int64_t o = 0;
  for (; o + S::kLanes <= n_out; o += S::kLanes) {
    typename S::V acc = S::load(y + o);
    for (int t = 0; t < nterms; ++t) acc += av[t] * S::load(w[t] + o);
    S::store(y + o, acc);
  }
  for (; o < n_out; ++o) {
    T acc = y[o];
    for (int t = 0; t < nterms; ++t) acc += a[t] * w[t][o];
    y[o] = acc;
  }
}

// dots[t] = sum_o g[o] * w[t][o]: one pass over g for all the terms.
template <typename T, int kTerms>
inline void multi_dot(const T* g, const T* const* w, int terms, int64_t n_out, T* dots) {
  using S = Simd<T>;
  const int nterms = kTerms > 0 ? kTerms : terms;
  typename S::V acc[kTerms > 0 ? kTerms : 64];
  for (int t = 0; t < nterms; ++t) acc[t] = S::splat(T(0));
  int64_t o = 0;
  for (; o + S::kLanes <= n_out; o += S::kLanes) {
    const typename S::V gv = S::load(g + o);
    for (int t = 0; t < nterms; ++t) acc[t] += gv * S::load(w[t] + o);
  }
  for (int t = 0; t < nterms; ++t) {
    T sum = S::sum(acc[t]);
    for (int64_t oo = o; oo < n_out; ++oo) sum += g[oo] * w[t][oo];
    dots[t] = sum;
  }
}

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

// Per-thread scratch memory kept between calls (the OpenMP threads persist), so that the column
// buffers of every group and call do not go back to the allocator (whose trimming would cost
// page faults each time). Allocated in 2 MiB-aligned blocks with transparent huge pages asked
// for where Linux offers them: the kernels jump between rows of these buffers for every batch
// row, and with 4 KiB pages those jumps miss the TLB once the buffers outgrow a few dozen pages.
// Requests above kMaxKept elements get a buffer of their own.
class AlignedBlock {
 public:
  static constexpr size_t kAlign = size_t(2) << 20;
  ~AlignedBlock() { std::free(data_); }
  void* reserve(size_t bytes) {
    if (bytes > bytes_) {
      std::free(data_);
      bytes_ = (bytes + kAlign - 1) / kAlign * kAlign;
      data_ = std::aligned_alloc(kAlign, bytes_);
      if (data_ == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      madvise(data_, bytes_, MADV_HUGEPAGE);  // a hint; without huge pages all still works
#endif
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

template <typename T, int kSlot = 0>  // slot: independent buffers of one thread
class Workspace {
 public:
  // up to this many values the thread's kept block serves (alive after the Workspace is gone);
  // a larger one is the Workspace's own, freed with it: keep such a Workspace alive while in use
  static constexpr int64_t kMaxKept = int64_t(1) << 24;
  explicit Workspace(int64_t count) {
    thread_local AlignedBlock kept;
    AlignedBlock& block = count <= kMaxKept ? kept : own_;
    data_ = static_cast<T*>(block.reserve(sizeof(T) * static_cast<size_t>(count)));
  }
  T* data() { return data_; }

 private:
  AlignedBlock own_;
  T* data_;
};

template <typename T>
struct ColumnWeights {  // the padded (n + 2 (order + 1), n_out) rows of one input column
  int64_t n_out;
  int pad, n;
  T* buf;  // in a Workspace
  static int64_t size(int64_t n_out, int n, int order) { return (n + 2 * (order + 1)) * n_out; }
  // zero_all: every row 0 (an accumulator); else only the padding rows (load() fills the rest)
  ColumnWeights(T* storage, int64_t n_out_, int n_, int order, bool zero_all)
      : n_out(n_out_), pad(order + 1), n(n_), buf(storage) {
    if (zero_all) {
      std::memset(buf, 0, sizeof(T) * size(n_out, n, order));
    } else {
      std::memset(buf, 0, sizeof(T) * pad * n_out);
      std::memset(buf + (n + pad) * n_out, 0, sizeof(T) * pad * n_out);
    }
  }
  T* row(int q) { return buf + (q + pad) * n_out; }  // q in [-pad, n + pad)
  const T* row(int q) const { return buf + (q + pad) * n_out; }
  // For the columns i0..i0+cols of a group, into w[0..cols): rows q = coef[o, i, q] * scale[o, i]
  // over o. A transpose, by register tiles of kLanes x kLanes (a scalar loop for the ragged
  // edges). The group's coef rows (cols * n values, contiguous in memory for one o) are first
  // copied into a staging buffer: read in place, every tile would touch kLanes far-apart rows a
  // cache line at a time, faster than the prefetchers follow.
  static void load_group(ColumnWeights* w, int cols, const T* coef, const T* scale, int64_t n_in, int64_t i0) {
    using S = Simd<T>;
    constexpr int L = S::kLanes;
    const int64_t n_out = w[0].n_out;
    const int n = w[0].n, span = cols * n;
    thread_local std::vector<T> stage_buf;
    if (static_cast<int64_t>(stage_buf.size()) < L * span) stage_buf.resize(L * span);
    T* stage = stage_buf.data();
    typename S::V r[L];
    int64_t o0 = 0;
    for (; o0 + L <= n_out; o0 += L) {
      for (int u = 0; u < L; ++u) std::memcpy(stage + u * span, coef + ((o0 + u) * n_in + i0) * n, sizeof(T) * span);
      for (int c = 0; c < cols; ++c) {
        const int64_t i = i0 + c;
        int q0 = 0;
        for (; q0 + L <= n; q0 += L) {
          for (int u = 0; u < L; ++u) r[u] = S::load(stage + u * span + c * n + q0) * scale[(o0 + u) * n_in + i];
          transpose_tile<T>(r);
          for (int qq = 0; qq < L; ++qq) S::store(w[c].row(q0 + qq) + o0, r[qq]);
        }
        for (int u = 0; u < L; ++u) {
          const T so = scale[(o0 + u) * n_in + i];
          for (int q = q0; q < n; ++q) w[c].row(q)[o0 + u] = stage[u * span + c * n + q] * so;
        }
      }
    }
    for (; o0 < n_out; ++o0)
      for (int c = 0; c < cols; ++c) {
        const T* src = coef + (o0 * n_in + i0 + c) * n;
        const T so = scale[o0 * n_in + i0 + c];
        for (int q = 0; q < n; ++q) w[c].row(q)[o0] = src[q] * so;
      }
  }

  // For the columns i0..i0+cols of a group, whose accumulators are acc[0..cols):
  // grad_coef[o, i, q] = acc_i.row(q)[o] * scale[o, i] and grad_scale[o, i] =
  // sum_q acc_i.row(q)[o] coef[o, i, q] (either may be null). The transpose back, by register
  // tiles; coef and grad_coef move through staging buffers a whole group row (cols * n values,
  // contiguous in memory) at a time (see load).
  static void store_group_grads(const ColumnWeights* acc, int cols, const T* coef, const T* scale, int64_t n_in,
                                int64_t i0, T* grad_coef, T* grad_scale) {
    using S = Simd<T>;
    constexpr int L = S::kLanes;
    const int64_t n_out = acc[0].n_out;
    const int n = acc[0].n, span = cols * n;
    thread_local std::vector<T> stage_buf;
    if (static_cast<int64_t>(stage_buf.size()) < 2 * L * span) stage_buf.resize(2 * L * span);
    T* cstage = stage_buf.data();  // coef in: row u = output o0 + u, the group's cols * n values
    T* gstage = cstage + L * span;  // grad_coef out, same layout
    typename S::V r[L], gs[L];
    int64_t o0 = 0;
    for (; o0 + L <= n_out; o0 += L) {
      for (int u = 0; u < L; ++u) std::memcpy(cstage + u * span, coef + ((o0 + u) * n_in + i0) * n, sizeof(T) * span);
      for (int c = 0; c < cols; ++c) {
        const int64_t i = i0 + c;
        for (int u = 0; u < L; ++u) gs[u] = S::splat(T(0));
        int q0 = 0;
        for (; q0 + L <= n; q0 += L) {
          for (int qq = 0; qq < L; ++qq) r[qq] = S::load(acc[c].row(q0 + qq) + o0);
          transpose_tile<T>(r);  // r[u]: output o0 + u, over q0..q0+L
          for (int u = 0; u < L; ++u) {
            const int64_t at = u * span + c * n + q0;
            S::store(gstage + at, r[u] * scale[(o0 + u) * n_in + i]);
            gs[u] += r[u] * S::load(cstage + at);
          }
        }
        for (int u = 0; u < L; ++u) {
          const int64_t o = o0 + u;
          const T so = scale[o * n_in + i];
          T sum = S::sum(gs[u]);
          for (int q = q0; q < n; ++q) {
            const T a = acc[c].row(q)[o];
            gstage[u * span + c * n + q] = a * so;
            sum += a * cstage[u * span + c * n + q];
          }
          if (grad_scale) grad_scale[o * n_in + i] = sum;
        }
      }
      if (grad_coef)
        for (int u = 0; u < L; ++u) std::memcpy(grad_coef + ((o0 + u) * n_in + i0) * n, gstage + u * span, sizeof(T) * span);
    }
    for (; o0 < n_out; ++o0) {
      for (int c = 0; c < cols; ++c) {
        const int64_t i = i0 + c, e = (o0 * n_in + i) * n;
        const T so = scale[o0 * n_in + i];
        T sum = T(0);
        for (int q = 0; q < n; ++q) {
          const T a = acc[c].row(q)[o0];
          if (grad_coef) grad_coef[e + q] = a * so;
          sum += a * coef[e + q];
        }
        if (grad_scale) grad_scale[o0 * n_in + i] = sum;
      }
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

constexpr int kGroup = 4;  // input columns handled together (one pass over y or g per group)

// Split the column groups [0, groups) over the threads; fn(thread, group).
template <typename F>
void parallel_groups(int64_t groups, int nthreads, F fn) {
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, groups)));
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t grp = 0; grp < groups; ++grp) fn(omp_get_thread_num(), grp);
#else
  (void)nt;
  for (int64_t grp = 0; grp < groups; ++grp) fn(0, grp);
#endif
}

// The local bases of a group of columns for one block of batch rows: rows[c][j], values or
// derivatives v[c][r][j]. Columns past n_in (a short last group) get NaN-free zero weights.
template <typename T, int K>
struct GroupBlock {
  T rows[kGroup][kBlock];
  T v[kGroup][kMaxOrder + 1][kBlock];
};

// y[b, o] = sum_i scale[o, i] sum_q coef[o, i, q] B_q(x[b, i]).
template <typename T, int K>
void sparse_forward(const T* x, const T* shift, const T* inv_h, const T* coef, const T* scale, int64_t rows,
                    int64_t n_in, int64_t n_out, const Spline<T>& s, T* y, int nthreads) {
  const int k = K >= 0 ? K : s.order;
  const int64_t groups = (n_in + kGroup - 1) / kGroup;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, groups)));
  std::vector<T*> partial(nt, nullptr);  // one (rows, n_out) sum per thread, in its workspace
  // a sum over Workspace::kMaxKept values is not kept by the thread: it lives here until the end
  // (a temporary Workspace freed it at once; rows * n_out > 2^24 wrote into freed memory)
  std::vector<AlignedBlock> large(static_cast<size_t>(nt));
  parallel_groups(groups, nt, [&](int tid, int64_t grp) {
    if (partial[tid] == nullptr) {
      const int64_t count = rows * n_out;
      partial[tid] = count <= Workspace<T, 1>::kMaxKept
                         ? Workspace<T, 1>(count).data()
                         : static_cast<T*>(large[static_cast<size_t>(tid)].reserve(sizeof(T) * count));
      std::memset(partial[tid], 0, sizeof(T) * count);
    }
    T* acc = partial[tid];
    const int64_t i0 = grp * kGroup;
    const int cols = static_cast<int>(std::min<int64_t>(kGroup, n_in - i0));
    const int64_t per = ColumnWeights<T>::size(n_out, s.n, s.order);
    Workspace<T> space(kGroup * per);
    std::vector<ColumnWeights<T>> w;
    for (int c = 0; c < cols; ++c) w.emplace_back(space.data() + c * per, n_out, s.n, s.order, false);
    ColumnWeights<T>::load_group(w.data(), cols, coef, scale, n_in, i0);
    GroupBlock<T, K> blk;
    const T* wr[kGroup * (kMaxOrder + 1)];
    T vr[kGroup * (kMaxOrder + 1)];
    const int terms = cols * (k + 1);
    for (int64_t b0 = 0; b0 < rows; b0 += kBlock) {
      const int m = static_cast<int>(std::min<int64_t>(kBlock, rows - b0));
      for (int c = 0; c < cols; ++c)
        evaluate_column<T, K>(s, x, n_in, i0 + c, b0, m, shift[i0 + c], inv_h[i0 + c], 0, blk.rows[c], blk.v[c]);
      for (int j = 0; j < m; ++j) {
        for (int c = 0; c < cols; ++c) {
          const int first = static_cast<int>(blk.rows[c][j]) - 1 - k;
          for (int r = 0; r <= k; ++r) {
            wr[c * (k + 1) + r] = w[c].row(first + r);
            vr[c * (k + 1) + r] = blk.v[c][r][j];
          }
        }
        T* yb = acc + (b0 + j) * n_out;
        if (K >= 0 && cols == kGroup)  // the common case: a compile-time number of terms
          multi_axpy<T, kGroup * ((K >= 0 ? K : 0) + 1)>(yb, wr, vr, terms, n_out);
        else
          multi_axpy<T, 0>(yb, wr, vr, terms, n_out);
      }
    }
  });
  // y = sum of the threads' parts (threads that got no group left theirs empty)
  parallel_rows(rows, nthreads, 16, [&](int64_t a, int64_t b) {
    for (int64_t e = a * n_out; e < b * n_out; ++e) {
      T sum = T(0);
      for (int t = 0; t < nt; ++t)
        if (partial[t] != nullptr) sum += partial[t][e];
      y[e] = sum;
    }
  });
}

// acc.row(q) += sum_b B_q(x[b, i]) g[b, :] for one input column i, with the batch rows grouped
// by their interval (a counting sort): all rows of one interval update the same order + 1
// accumulator rows, so those sums stay in registers over the group (kChunk vectors of outputs at
// a time) and the accumulator is read and written once per interval instead of once per row.
// For a compile-time order and n_out a multiple of kChunk vectors.
constexpr int kChunk = 4;
template <typename T, int K>
void bucketed_rank1(const Spline<T>& s, const T* x, int64_t n_in, int64_t i, T shift, T inv_h, int64_t rows,
                    const T* g, int64_t n_out, ColumnWeights<T>& acc) {
  static_assert(K >= 0, "compile-time order");
  using S = Simd<T>;
  constexpr int K1 = K + 1, L = S::kLanes;
  const int nb = s.n + s.order + 2;  // table rows R in [0, n + order + 1]: the first basis is R - 1 - order
  Workspace<T, 2> value_space(rows * K1);
  Workspace<int32_t, 3> index_space(2 * rows + nb + 1);
  T* vals = value_space.data();
  int32_t* bucket = index_space.data();
  int32_t* order = bucket + rows;
  int32_t* start = order + rows;
  T rb[kBlock];
  T v[kMaxOrder + 1][kBlock];
  for (int64_t b0 = 0; b0 < rows; b0 += kBlock) {
    const int m = static_cast<int>(std::min<int64_t>(kBlock, rows - b0));
    evaluate_column<T, K>(s, x, n_in, i, b0, m, shift, inv_h, 0, rb, v);
    for (int j = 0; j < m; ++j) {
      bucket[b0 + j] = static_cast<int32_t>(rb[j]);
      for (int r = 0; r < K1; ++r) vals[(b0 + j) * K1 + r] = v[r][j];
    }
  }
  for (int f = 0; f <= nb; ++f) start[f] = 0;
  for (int64_t b = 0; b < rows; ++b) ++start[bucket[b] + 1];
  for (int f = 0; f < nb; ++f) start[f + 1] += start[f];
  for (int64_t b = 0; b < rows; ++b) order[start[bucket[b]]++] = static_cast<int32_t>(b);
  for (int f = nb; f > 0; --f) start[f] = start[f - 1];  // back to the first position of each
  start[0] = 0;
  for (int64_t o0 = 0; o0 < n_out; o0 += kChunk * L) {
    for (int f = 0; f < nb; ++f) {
      if (start[f] == start[f + 1]) continue;
      typename S::V sums[K1][kChunk];
      for (int r = 0; r < K1; ++r)
        for (int cc = 0; cc < kChunk; ++cc) sums[r][cc] = S::splat(T(0));
      for (int32_t p = start[f]; p < start[f + 1]; ++p) {
        const int64_t b = order[p];
        const T* gb = g + b * n_out + o0;
        typename S::V gv[kChunk];
        for (int cc = 0; cc < kChunk; ++cc) gv[cc] = S::load(gb + cc * L);
        for (int r = 0; r < K1; ++r) {
          const typename S::V vb = S::splat(vals[b * K1 + r]);
          for (int cc = 0; cc < kChunk; ++cc) sums[r][cc] += vb * gv[cc];
        }
      }
      const int first = f - 1 - K;
      for (int r = 0; r < K1; ++r) {
        T* row = acc.row(first + r) + o0;
        for (int cc = 0; cc < kChunk; ++cc) S::store(row + cc * L, S::load(row + cc * L) + sums[r][cc]);
      }
    }
  }
}

// From g = dL/dy (rows, n_out): grad_x[b, i] = inv_h[i] sum_q dB_q/du (x[b, i]) sum_o g[b, o] w[o, i, q]
// (w = coef * scale), grad_coef[o, i, q] = scale[o, i] sum_b g[b, o] B_q(x[b, i]) and
// grad_scale[o, i] = sum_q coef[o, i, q] sum_b g[b, o] B_q(x[b, i]). Null outputs are skipped.
template <typename T, int K>
void sparse_backward(const T* x, const T* shift, const T* inv_h, const T* coef, const T* scale, const T* g,
                     int64_t rows, int64_t n_in, int64_t n_out, const Spline<T>& s, T* grad_x, T* grad_coef,
                     T* grad_scale, int nthreads) {
  const int k = K >= 0 ? K : s.order, n = s.n;
  const bool need_w = grad_coef != nullptr || grad_scale != nullptr;
  const int64_t groups = (n_in + kGroup - 1) / kGroup;
  parallel_groups(groups, nthreads, [&](int, int64_t grp) {
    const int64_t i0 = grp * kGroup;
    const int cols = static_cast<int>(std::min<int64_t>(kGroup, n_in - i0));
    const int64_t per = ColumnWeights<T>::size(n_out, n, s.order);
    Workspace<T> space(2 * kGroup * per);
    std::vector<ColumnWeights<T>> w, acc;
    for (int c = 0; c < cols; ++c) {
      if (grad_x) w.emplace_back(space.data() + c * per, n_out, n, s.order, false);
      if (need_w) acc.emplace_back(space.data() + (kGroup + c) * per, n_out, n, s.order, true);
    }
    if (grad_x) ColumnWeights<T>::load_group(w.data(), cols, coef, scale, n_in, i0);
    GroupBlock<T, K> val, der;
    const T* wr[kGroup * (kMaxOrder + 1)];
    T* ar[kGroup * (kMaxOrder + 1)];
    T vr[kGroup * (kMaxOrder + 1)];
    T dots[kGroup * (kMaxOrder + 1)];
    const int terms = cols * (k + 1);
    const bool bucketed = K >= 0 && n_out % (kChunk * Simd<T>::kLanes) == 0;  // see bucketed_rank1
    // two sweeps over the batch, one per gradient: the weight rows read by the first and the
    // accumulator rows written by the second do not fit in L1 together
    for (int pass = 0; pass < 2; ++pass) {
      const bool dx = pass == 0;
      if (dx ? grad_x == nullptr : (!need_w || bucketed)) continue;  // bucketed: after the loop
      GroupBlock<T, K>& blk = dx ? der : val;
      for (int64_t b0 = 0; b0 < rows; b0 += kBlock) {
        const int m = static_cast<int>(std::min<int64_t>(kBlock, rows - b0));
        for (int c = 0; c < cols; ++c) {
          const int64_t i = i0 + c;
          evaluate_column<T, K>(s, x, n_in, i, b0, m, shift[i], inv_h[i], dx ? k + 1 : 0, blk.rows[c], blk.v[c]);
        }
        for (int j = 0; j < m; ++j) {
          const T* gb = g + (b0 + j) * n_out;
          if (dx) {
            for (int c = 0; c < cols; ++c) {
              const int first = static_cast<int>(blk.rows[c][j]) - 1 - k;
              for (int r = 0; r <= k; ++r) wr[c * (k + 1) + r] = w[c].row(first + r);
            }
            if (K >= 0 && cols == kGroup)
              multi_dot<T, kGroup * ((K >= 0 ? K : 0) + 1)>(gb, wr, terms, n_out, dots);
            else
              multi_dot<T, 0>(gb, wr, terms, n_out, dots);
            for (int c = 0; c < cols; ++c) {
              T sum = T(0);
              for (int r = 0; r <= k; ++r) sum += blk.v[c][r][j] * dots[c * (k + 1) + r];
              grad_x[(b0 + j) * n_in + i0 + c] = sum * inv_h[i0 + c];
            }
          }
        }
        if (dx) continue;
        // the accumulator rows one column at a time: one column's rows stay in L1 (the group's
        // would not at larger widths), the block's rows of g are read again from L2
        for (int c = 0; c < cols; ++c) {
          for (int j = 0; j < m; ++j) {
            const T* gb = g + (b0 + j) * n_out;
            const int first = static_cast<int>(blk.rows[c][j]) - 1 - k;
            for (int r = 0; r <= k; ++r) {
              ar[r] = acc[c].row(first + r);
              vr[r] = blk.v[c][r][j];
            }
            multi_rank1<T, (K >= 0 ? K + 1 : 0)>(ar, vr, gb, k + 1, n_out);
          }
        }
      }
    }
    if (!need_w) return;
    if (bucketed) {
      if constexpr (K >= 0) {
        for (int c = 0; c < cols; ++c)
          bucketed_rank1<T, K>(s, x, n_in, i0 + c, shift[i0 + c], inv_h[i0 + c], rows, g, n_out, acc[c]);
      }
    }
    ColumnWeights<T>::store_group_grads(acc.data(), cols, coef, scale, n_in, i0, grad_coef, grad_scale);
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
