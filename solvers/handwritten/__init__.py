"""The strongest array-library peers: explicit Runge-Kutta solvers written by hand.

A vmapped diffrax solve pays for diffrax's generality (a general solver loop, PyTree state,
interpolation bookkeeping); a batched torchdiffeq solve shares one step size across the batch.
These backends are what a careful engineer would write directly in each library, so a speedup
of the fused kernel over them is a speedup over the library, not over a convenient default:

* ``jax-handwritten`` (:mod:`solvers.handwritten.jax_backend`): the whole solve under one
  ``jax.jit``; ``lax.fori_loop`` (fixed) / ``lax.while_loop`` (adaptive); the ensemble by
  ``vmap`` (variant "") or written as structure-of-arrays (variant "soa").
* ``torch-handwritten`` (:mod:`solvers.handwritten.torch_backend`): the same on torch tensors,
  eager (variant ""), ``torch.compile``d step ("compiled"), CUDA-graph replay ("cudagraph", GPU).
* ``pallas`` (:mod:`solvers.handwritten.pallas_backend`): the fused one-thread-per-trajectory
  design in JAX's kernel language (Triton lowering on a GPU, interpret mode on a CPU).

All three take the right-hand side from ``problem.rhs_for(namespace)``, the tableau and the
controller constants from :mod:`solvers.tableaus`, and share the arithmetic of one step in
:mod:`solvers.handwritten.rk` (written once over tuples of arrays). Modules are imported lazily
by the registry, so importing this package imports neither JAX nor torch.
"""
