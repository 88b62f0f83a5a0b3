// Hand-written fused ODE ensemble solver: one trajectory per CUDA thread / per CPU lane.
//
// The same source builds for CUDA (NVRTC at run time, nvcc in the tests) and for the host
// (g++ -O3 -march=native -fopenmp). Everything a trajectory needs lives in registers; global
// arrays are laid out trajectory-last (structure of arrays: u0[s*N + i]) so neighbouring
// threads / lanes touch neighbouring addresses.
//
// This file is not compiled alone. solvers/cpp/source.py puts in front of it, generated:
//   * `real` (float or double) and `lane_int` (an integer of the same width);
//   * NS, NP (states, parameters) and rhs(u, p, t, du), translated by SymPy's C code printer
//     from the problem's Python right-hand side, every literal typed as `real`;
//   * every tableau and controller constant, from solvers/tableaus.py (never retyped here),
//     as `constexpr real` with an `f` suffix in float kernels; status codes from solvers/base.py.
// Nothing in this file spells a tableau coefficient.

#ifndef HD  // (source.py defines it first: the generated rhs uses it)
#if defined(__CUDACC__)
#define HD __host__ __device__ __forceinline__
#else
#define HD inline __attribute__((always_inline))
#endif
#endif
#if defined(__CUDACC__)
#define KERNEL extern "C" __global__ void __launch_bounds__(256)
#endif

// ---- small helpers: selects (not branches), bit casts, a vectorisable log/exp ---------------

HD real vmin(real a, real b) { return a < b ? a : b; }
HD real vmax(real a, real b) { return a > b ? a : b; }
HD real vabs(real a) { return a < real(0) ? -a : a; }

#if defined(__CUDACC__)
__device__ __forceinline__ float vsqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double vsqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float vfloor(float x) { return floorf(x); }
__device__ __forceinline__ double vfloor(double x) { return floor(x); }
__device__ __forceinline__ int f2i(float x) { return __float_as_int(x); }
__device__ __forceinline__ long long f2i(double x) { return __double_as_longlong(x); }
__device__ __forceinline__ float i2f(int x) { return __int_as_float(x); }
__device__ __forceinline__ double i2f(long long x) { return __longlong_as_double(x); }
#else
HD float vsqrt(float x) { return __builtin_sqrtf(x); }
HD double vsqrt(double x) { return __builtin_sqrt(x); }
HD float vfloor(float x) { return __builtin_floorf(x); }
HD double vfloor(double x) { return __builtin_floor(x); }
HD int f2i(float x) { int i; __builtin_memcpy(&i, &x, 4); return i; }
HD long long f2i(double x) { long long i; __builtin_memcpy(&i, &x, 8); return i; }
HD float i2f(int i) { float x; __builtin_memcpy(&x, &i, 4); return x; }
HD double i2f(long long i) { double x; __builtin_memcpy(&x, &i, 8); return x; }
#endif

// IEEE layout of `real` (float: 8-bit exponent, 23-bit mantissa; double: 11, 52).
constexpr int F_SHIFT = sizeof(real) == 4 ? 23 : 52;
constexpr lane_int F_BIAS = sizeof(real) == 4 ? 127 : 1023;
constexpr lane_int F_EMASK = sizeof(real) == 4 ? 0xff : 0x7ff;
constexpr lane_int F_MANT = (lane_int(1) << F_SHIFT) - 1;
constexpr lane_int F_ONE = F_BIAS << F_SHIFT;   // the bits of 1.0

// Integer <-> real for small integers through the 1.5*2^SHIFT rounding constant, with integer
// adds only: AVX2 has no packed double <-> int64 conversion, and these keep the float64 lane
// loop vectorised (exact for |k| < 2^(SHIFT-1); here |k| < 1100).
HD real int_to_real(lane_int k) { return i2f(f2i(K_ROUND) + k) - K_ROUND; }
HD lane_int real_to_int(real integral) { return f2i(integral + K_ROUND) - f2i(K_ROUND); }

// log(x) for positive normal x: x = 2^e m, m folded into [sqrt(1/2), sqrt(2)),
// log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172, by its odd series (LOG_TERMS terms puts
// the truncation below half an ulp). libm's log would not vectorise in the CPU lane loop.
HD real klog(real x) {
  real m = i2f((f2i(x) & F_MANT) | F_ONE);
  real e = int_to_real(((f2i(x) >> F_SHIFT) & F_EMASK) - F_BIAS);
  const bool big = m > K_SQRT2;
  m = big ? m * K_HALF : m;
  e = big ? e + K_ONE : e;
  const real s = (m - K_ONE) / (m + K_ONE);
  const real s2 = s * s;
  real poly = K_ONE / real(2 * LOG_TERMS - 1);
  for (int k = LOG_TERMS - 2; k >= 0; --k) poly = K_ONE / real(2 * k + 1) + s2 * poly;
  return e * K_LN2 + (s + s) * poly;
}

// exp(z) for |z| < 80: z = n ln2 + r (Cody-Waite two-part ln2), e^r by its Taylor series,
// times 2^n built from bits.
HD real kexp(real z) {
  z = vmin(vmax(z, K_EXP_ZMIN), K_EXP_ZMAX);
  const real nf = vfloor(z * K_LOG2E + K_HALF);
  const real r = (z - nf * K_LN2_HI) - nf * K_LN2_LO;
  real fact[EXP_TERMS];   // 1/k!, folded to constants by the compiler
  fact[0] = K_ONE;
  for (int k = 1; k < EXP_TERMS; ++k) fact[k] = fact[k - 1] / real(k);
  real poly = fact[EXP_TERMS - 1];
  for (int k = EXP_TERMS - 2; k >= 0; --k) poly = fact[k] + r * poly;
  return poly * i2f((real_to_int(nf) + F_BIAS) << F_SHIFT);
}

// ---- DiffEqGPU's PI step controller and error norm -----------------------------------------
// pi_control(ssq, lm, h, dt_acc, dt_rej, lm_new) and error_ssq(err, y, yn, rtol, atol) are
// printed by solvers/cpp/source.py from solvers.tableaus (pi_control_squared, error_scales,
// scaled_ssq), the definition every implementation of this project shares: ssq = n EEst^2
// (no square root, no division by n), accepted when ssq <= CTRL_NSTATES, one klog and one kexp
// per attempt, the controller memory carried as lm = log(n qold^2).
// @CONTROLLER@

HD bool all_finite(const real (&y)[NS]) {
  bool ok = true;
#pragma unroll
  for (int s = 0; s < NS; ++s) ok = ok & (vabs(y[s]) <= K_BIG);
  return ok;
}

// ---- the methods ----------------------------------------------------------------------------
// step(y, p, t, h): one fixed step in place. Adaptive methods (Tsit5) also have
// init(y, p, t, k1) (the FSAL derivative) and attempt(...) (candidate state, new FSAL stage,
// EEst). Every sum y + h*(sum_j a_ij k_j) is a function of the generated prelude
// (tsit5_stage_i, *_solution, *_error), printed from solvers.tableaus.rk_update.

struct Tsit5 {
  static constexpr int STEP_EVALS = 6;     // the 7th (FSAL) stage is the next step's first
  static constexpr int INIT_EVALS = 1;
  static constexpr int ATTEMPT_EVALS = 6;

  // Stages k2..k6 of a step from (t, y) with k1 = f(t, y).
  HD static void stages(const real (&y)[NS], const real (&p)[NP], real t, real h,
                        const real (&k1)[NS], real (&k2)[NS], real (&k3)[NS], real (&k4)[NS],
                        real (&k5)[NS], real (&k6)[NS]) {
    real u[NS];
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = tsit5_stage_1(y[s], h, k1[s]);
    rhs(u, p, t + h * TSIT5_C_1, k2);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = tsit5_stage_2(y[s], h, k1[s], k2[s]);
    rhs(u, p, t + h * TSIT5_C_2, k3);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = tsit5_stage_3(y[s], h, k1[s], k2[s], k3[s]);
    rhs(u, p, t + h * TSIT5_C_3, k4);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = tsit5_stage_4(y[s], h, k1[s], k2[s], k3[s], k4[s]);
    rhs(u, p, t + h * TSIT5_C_4, k5);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = tsit5_stage_5(y[s], h, k1[s], k2[s], k3[s], k4[s], k5[s]);
    rhs(u, p, t + h, k6);   // c_5 = 1
  }

  HD static void step(real (&y)[NS], const real (&p)[NP], real t, real h) {
    real k1[NS], k2[NS], k3[NS], k4[NS], k5[NS], k6[NS];
    rhs(y, p, t, k1);
    stages(y, p, t, h, k1, k2, k3, k4, k5, k6);
#pragma unroll
    for (int s = 0; s < NS; ++s) y[s] = tsit5_solution(y[s], h, k1[s], k2[s], k3[s], k4[s], k5[s], k6[s]);
  }

  HD static void init(const real (&y)[NS], const real (&p)[NP], real t, real (&k1)[NS]) {
    rhs(y, p, t, k1);
  }

  // One attempt from (t, y) with FSAL stage k1: candidate yn, its stage k7 = f(t + h, yn), EEst.
  HD static real attempt(const real (&y)[NS], const real (&k1)[NS], const real (&p)[NP], real t,
                         real h, real rtol, real atol, real (&yn)[NS], real (&k7)[NS]) {
    real k2[NS], k3[NS], k4[NS], k5[NS], k6[NS], err[NS];
    stages(y, p, t, h, k1, k2, k3, k4, k5, k6);
#pragma unroll
    for (int s = 0; s < NS; ++s) yn[s] = tsit5_stage_6(y[s], h, k1[s], k2[s], k3[s], k4[s], k5[s], k6[s]);
    rhs(yn, p, t + h, k7);  // c_6 = 1: the FSAL stage, at the candidate
#pragma unroll
    for (int s = 0; s < NS; ++s) err[s] = tsit5_error(h, k1[s], k2[s], k3[s], k4[s], k5[s], k6[s], k7[s]);
    return error_ssq(err, y, yn, rtol, atol);
  }
};

struct Rk4 {   // the classic rule: a_2_0 = a_3_0 = a_3_1 = 0
  static constexpr int STEP_EVALS = 4;
  HD static void step(real (&y)[NS], const real (&p)[NP], real t, real h) {
    real k1[NS], k2[NS], k3[NS], k4[NS], u[NS];
    rhs(y, p, t, k1);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = rk4_stage_1(y[s], h, k1[s]);
    rhs(u, p, t + h * RK4_C_1, k2);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = rk4_stage_2(y[s], h, k1[s], k2[s]);
    rhs(u, p, t + h * RK4_C_2, k3);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = rk4_stage_3(y[s], h, k1[s], k2[s], k3[s]);
    rhs(u, p, t + h, k4);  // c_3 = 1
#pragma unroll
    for (int s = 0; s < NS; ++s) y[s] = rk4_solution(y[s], h, k1[s], k2[s], k3[s], k4[s]);
  }
};

struct Rk4_38 {   // Kutta's 3/8 rule (torchdiffeq's "rk4")
  static constexpr int STEP_EVALS = 4;
  HD static void step(real (&y)[NS], const real (&p)[NP], real t, real h) {
    real k1[NS], k2[NS], k3[NS], k4[NS], u[NS];
    rhs(y, p, t, k1);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = rk4_38_stage_1(y[s], h, k1[s]);
    rhs(u, p, t + h * RK4_38_C_1, k2);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = rk4_38_stage_2(y[s], h, k1[s], k2[s]);
    rhs(u, p, t + h * RK4_38_C_2, k3);
#pragma unroll
    for (int s = 0; s < NS; ++s) u[s] = rk4_38_stage_3(y[s], h, k1[s], k2[s], k3[s]);
    rhs(u, p, t + h, k4);  // c_3 = 1
#pragma unroll
    for (int s = 0; s < NS; ++s) y[s] = rk4_38_solution(y[s], h, k1[s], k2[s], k3[s], k4[s]);
  }
};

// ---- one trajectory: the body of a CUDA thread (and of the scalar host path) ------------------

template <class M>
HD void solve_fixed_one(long long i, long long N, const real* __restrict__ u0,
                        const real* __restrict__ pp, real t0, real dt, long long n_steps,
                        real* __restrict__ out_u, int* __restrict__ stats, int* __restrict__ status) {
  real y[NS], p[NP];
#pragma unroll
  for (int s = 0; s < NS; ++s) y[s] = u0[s * N + i];
#pragma unroll
  for (int s = 0; s < NP; ++s) p[s] = pp[s * N + i];
  for (long long k = 0; k < n_steps; ++k) M::step(y, p, t0 + real(k) * dt, dt);
#pragma unroll
  for (int s = 0; s < NS; ++s) out_u[s * N + i] = y[s];
  stats[i] = int(n_steps);
  stats[N + i] = 0;
  stats[2 * N + i] = int(n_steps * M::STEP_EVALS);
  status[i] = all_finite(y) ? ST_SUCCESS : ST_NONFINITE;
}

// Checks before each attempt, in this order: max_steps reached -> MAX_STEPS; a step (not the
// clipped last one) below dtmin or not advancing t -> DT_UNDERFLOW; after it, a non-finite
// candidate or NaN EEst -> NONFINITE (counted as rejected, the candidate returned).
template <class M>
HD void solve_adaptive_one(long long i, long long N, const real* __restrict__ u0,
                           const real* __restrict__ pp, real t0, real tf, real dt, real rtol,
                           real atol, long long max_steps, real* __restrict__ out_u,
                           int* __restrict__ stats, int* __restrict__ status) {
  real y[NS], p[NP], k1[NS], yn[NS], k7[NS];
#pragma unroll
  for (int s = 0; s < NS; ++s) y[s] = u0[s * N + i];
#pragma unroll
  for (int s = 0; s < NP; ++s) p[s] = pp[s * N + i];
  real t = t0, dtc = dt, lm = CTRL_LM_INIT;
  M::init(y, p, t, k1);
  long long nacc = 0, nrej = 0;
  int st = t < tf ? ST_RUNNING : ST_SUCCESS;
  while (st == ST_RUNNING) {
    if (nacc + nrej >= max_steps) { st = ST_MAX_STEPS; break; }
    const real rem = tf - t;
    const bool last = dtc >= rem;
    const real h = last ? rem : dtc;
    if (!last && (h < CTRL_DTMIN || t + h == t)) { st = ST_DT_UNDERFLOW; break; }
    const real ssq = M::attempt(y, k1, p, t, h, rtol, atol, yn, k7);
    if (!((ssq == ssq) & all_finite(yn))) {
#pragma unroll
      for (int s = 0; s < NS; ++s) y[s] = yn[s];
      nrej += 1;
      st = ST_NONFINITE;
      break;
    }
    real dta, dtr, lmn;
    pi_control(ssq, lm, h, dta, dtr, lmn);
    if (ssq <= CTRL_NSTATES) {
      t = last ? tf : t + h;
#pragma unroll
      for (int s = 0; s < NS; ++s) { y[s] = yn[s]; k1[s] = k7[s]; }
      dtc = dta;
      lm = lmn;
      nacc += 1;
      if (t >= tf) st = ST_SUCCESS;
    } else {
      dtc = dtr;
      nrej += 1;
    }
  }
#pragma unroll
  for (int s = 0; s < NS; ++s) out_u[s * N + i] = y[s];
  stats[i] = int(nacc);
  stats[N + i] = int(nrej);
  stats[2 * N + i] = int(M::INIT_EVALS + M::ATTEMPT_EVALS * (nacc + nrej));
  status[i] = st;
}

#if defined(__CUDACC__)
// ---- CUDA: one thread per trajectory, one launch per ensemble solve ----------------------------
#define FIXED_KERNEL(NAME, M)                                                                   \
  KERNEL NAME(const real* __restrict__ u0, const real* __restrict__ p, real t0, real tf,        \
              real dt, long long n_steps, real rtol, real atol, long long max_steps,            \
              real* __restrict__ out_u, int* __restrict__ stats, int* __restrict__ status,      \
              long long N) {                                                                    \
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
    if (i < N) solve_fixed_one<M>(i, N, u0, p, t0, dt, n_steps, out_u, stats, status);          \
  }
#define ADAPTIVE_KERNEL(NAME, M)                                                                \
  KERNEL NAME(const real* __restrict__ u0, const real* __restrict__ p, real t0, real tf,        \
              real dt, long long n_steps, real rtol, real atol, long long max_steps,            \
              real* __restrict__ out_u, int* __restrict__ stats, int* __restrict__ status,      \
              long long N) {                                                                    \
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
    if (i < N)                                                                                  \
      solve_adaptive_one<M>(i, N, u0, p, t0, tf, dt, rtol, atol, max_steps, out_u, stats, status); \
  }
FIXED_KERNEL(tsit5_fixed, Tsit5)
ADAPTIVE_KERNEL(tsit5_adaptive, Tsit5)
FIXED_KERNEL(rk4_fixed, Rk4)
FIXED_KERNEL(rk4_38_fixed, Rk4_38)

#else
// ---- host: OpenMP over blocks of LANES trajectories, the lane loop vectorised -----------------
#include <omp.h>

#ifndef LANES
#define LANES 32   // two 512-bit float vectors (or four 256-bit ones) per pass, as the Numba kernel
#endif

static inline int team_size(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

// Fixed step: the time loop outside, the lanes innermost. The last block repeats the last
// trajectory in its spare lanes (computed, never written).
template <class M>
static void block_fixed(long long b, long long N, const real* __restrict__ u0,
                        const real* __restrict__ pp, real t0, real dt, long long n_steps,
                        real* __restrict__ out_u, int* __restrict__ stats, int* __restrict__ status) {
  real Y[NS][LANES], P[NP][LANES];
  const long long base = b * LANES;
  for (int l = 0; l < LANES; ++l) {
    const long long i = base + l < N ? base + l : N - 1;
    for (int s = 0; s < NS; ++s) Y[s][l] = u0[s * N + i];
    for (int s = 0; s < NP; ++s) P[s][l] = pp[s * N + i];
  }
  for (long long k = 0; k < n_steps; ++k) {
    const real t = t0 + real(k) * dt;
#pragma omp simd
    for (int l = 0; l < LANES; ++l) {
      real y[NS], p[NP];
      for (int s = 0; s < NS; ++s) y[s] = Y[s][l];
      for (int s = 0; s < NP; ++s) p[s] = P[s][l];
      M::step(y, p, t, dt);
      for (int s = 0; s < NS; ++s) Y[s][l] = y[s];
    }
  }
  for (int l = 0; l < LANES && base + l < N; ++l) {
    const long long i = base + l;
    real y[NS];
    for (int s = 0; s < NS; ++s) { y[s] = Y[s][l]; out_u[s * N + i] = y[s]; }
    stats[i] = int(n_steps);
    stats[N + i] = 0;
    stats[2 * N + i] = int(n_steps * M::STEP_EVALS);
    status[i] = all_finite(y) ? ST_SUCCESS : ST_NONFINITE;
  }
}

// Adaptive: every pass makes one attempt in every lane; each lane keeps its own t, dt and
// controller memory and changes only where its masks say so (selects, no branches), a finished
// lane computes on its frozen state and ignores the result, the block ends when no lane runs.
// Counters and status are `lane_int`, as wide as `real`, so the loop vectorises at full width.
template <class M>
static void block_adaptive(long long b, long long N, const real* __restrict__ u0,
                           const real* __restrict__ pp, real t0, real tf, real dt, real rtol,
                           real atol, lane_int max_steps, real* __restrict__ out_u,
                           int* __restrict__ stats, int* __restrict__ status) {
  real Y[NS][LANES], K[NS][LANES], P[NP][LANES], T[LANES], DT[LANES], LQ[LANES];
  lane_int ACC[LANES], REJ[LANES], ST[LANES];
  const long long base = b * LANES;
  for (int l = 0; l < LANES; ++l) {
    const long long i = base + l < N ? base + l : N - 1;
    real y[NS], p[NP], k1[NS];
    for (int s = 0; s < NS; ++s) y[s] = Y[s][l] = u0[s * N + i];
    for (int s = 0; s < NP; ++s) p[s] = P[s][l] = pp[s * N + i];
    M::init(y, p, t0, k1);
    for (int s = 0; s < NS; ++s) K[s][l] = k1[s];
    T[l] = t0; DT[l] = dt; LQ[l] = CTRL_LM_INIT;
    ACC[l] = 0; REJ[l] = 0; ST[l] = t0 < tf ? ST_RUNNING : ST_SUCCESS;
  }
  for (;;) {
    lane_int anyrun = 0;
#pragma omp simd reduction(| : anyrun)
    for (int l = 0; l < LANES; ++l) {
      real y[NS], k1[NS], p[NP], yn[NS], k7[NS];
      for (int s = 0; s < NS; ++s) { y[s] = Y[s][l]; k1[s] = K[s][l]; }
      for (int s = 0; s < NP; ++s) p[s] = P[s][l];
      const real t = T[l], dtc = DT[l], lm = LQ[l];
      const lane_int nacc = ACC[l], nrej = REJ[l];
      lane_int st = ST[l];
      // Masks are lane_int 0/1, not bool: GCC's vectoriser fails on selects mixing bool masks
      // of float and integer comparisons ("relevant stmt not supported"), not on these.
      const real rem = tf - t;
      const lane_int last = dtc >= rem;
      const real h = last ? rem : dtc;
      const lane_int run = st == ST_RUNNING;
      const lane_int maxed = nacc + nrej >= max_steps;
      const lane_int under = (1 - last) & (lane_int(h < CTRL_DTMIN) | lane_int(t + h == t));
      const real ssq = M::attempt(y, k1, p, t, h, rtol, atol, yn, k7);
      const lane_int fin = lane_int(ssq == ssq) & lane_int(all_finite(yn));
      real dta, dtr, lmn;
      pi_control(ssq, lm, h, dta, dtr, lmn);
      const lane_int go = run & (1 - maxed) & (1 - under);
      const lane_int small = ssq <= CTRL_NSTATES;
      const lane_int acc = go & fin & small;
      const lane_int rej = go & fin & (1 - small);
      const lane_int bad = go & (1 - fin);
      const real tn = last ? tf : t + h;
      for (int s = 0; s < NS; ++s) {
        Y[s][l] = (acc | bad) ? yn[s] : y[s];
        K[s][l] = acc ? k7[s] : k1[s];
      }
      T[l] = acc ? tn : t;
      DT[l] = acc ? dta : (rej ? dtr : dtc);
      LQ[l] = acc ? lmn : lm;
      ACC[l] = nacc + acc;
      REJ[l] = nrej + (rej | bad);
      st = (run & maxed) ? lane_int(ST_MAX_STEPS) : st;
      st = (run & (1 - maxed) & under) ? lane_int(ST_DT_UNDERFLOW) : st;
      st = bad ? lane_int(ST_NONFINITE) : st;
      st = (acc & lane_int(tn >= tf)) ? lane_int(ST_SUCCESS) : st;
      ST[l] = st;
      anyrun |= lane_int(st == ST_RUNNING);
    }
    if (!anyrun) break;
  }
  for (int l = 0; l < LANES && base + l < N; ++l) {
    const long long i = base + l;
    for (int s = 0; s < NS; ++s) out_u[s * N + i] = Y[s][l];
    stats[i] = int(ACC[l]);
    stats[N + i] = int(REJ[l]);
    stats[2 * N + i] = int(M::INIT_EVALS + M::ATTEMPT_EVALS * (ACC[l] + REJ[l]));
    status[i] = int(ST[l]);
  }
}

// Neighbouring trajectories need similar numbers of steps, contiguous halves of a parameter
// sweep do not: schedule(static, 1) deals the blocks out round-robin, which balances threads.
#define HOST_FIXED(NAME, M)                                                                     \
  extern "C" void NAME(const real* u0, const real* p, real t0, real tf, real dt,                \
                       long long n_steps, real rtol, real atol, long long max_steps,            \
                       real* out_u, int* stats, int* status, long long N, int threads) {        \
    const long long nb = (N + LANES - 1) / LANES;                                               \
    _Pragma("omp parallel for schedule(static, 1) num_threads(team_size(threads))")             \
    for (long long b = 0; b < nb; ++b)                                                          \
      block_fixed<M>(b, N, u0, p, t0, dt, n_steps, out_u, stats, status);                       \
  }
#define HOST_ADAPTIVE(NAME, M)                                                                  \
  extern "C" void NAME(const real* u0, const real* p, real t0, real tf, real dt,                \
                       long long n_steps, real rtol, real atol, long long max_steps,            \
                       real* out_u, int* stats, int* status, long long N, int threads) {        \
    const long long nb = (N + LANES - 1) / LANES;                                               \
    _Pragma("omp parallel for schedule(static, 1) num_threads(team_size(threads))")             \
    for (long long b = 0; b < nb; ++b)                                                          \
      block_adaptive<M>(b, N, u0, p, t0, tf, dt, rtol, atol, lane_int(max_steps), out_u, stats, \
                        status);                                                                \
  }
HOST_FIXED(tsit5_fixed, Tsit5)
HOST_ADAPTIVE(tsit5_adaptive, Tsit5)
HOST_FIXED(rk4_fixed, Rk4)
HOST_FIXED(rk4_38_fixed, Rk4_38)

// The one-trajectory-per-iteration form (the CUDA thread body), for tests and comparison.
extern "C" void tsit5_adaptive_serial(const real* u0, const real* p, real t0, real tf, real dt,
                                      long long n_steps, real rtol, real atol, long long max_steps,
                                      real* out_u, int* stats, int* status, long long N,
                                      int threads) {
#pragma omp parallel for schedule(static, 1) num_threads(team_size(threads))
  for (long long i = 0; i < N; ++i)
    solve_adaptive_one<Tsit5>(i, N, u0, p, t0, tf, dt, rtol, atol, max_steps, out_u, stats, status);
}
#endif
