"""GPU evidence without a GPU: static profiles of compiled kernels and a time model.

* ``kernels``: profile rows (registers, spills, occupancy, per-step SASS mix) of any PTX or CUDA
  C++ kernel, and of every fused kernel (``fused_profiles``), cached by content hash;
* ``cpp_kernels``: the hand-written C++ (cuda-cpp) kernel of a fused key, profiled beside Numba's;
* ``sass`` / ``tools``: reading ``ptxas -v`` and ``nvdisasm`` output; finding the CUDA tools;
* ``specs``: the GPU spec table, each number with its source; ``model``: the time models;
* ``compare``: the model against the paper's published times (figure, ratio table);
* ``cpu_asm``: the same counting on the CPU lane kernel's x86 assembly;
* ``section``: the report section (``report_section(run_dir, df, save)``) and ``readme_paragraph``.

Commands: ``python -m harness gpu-profile --arch sm_70,sm_75,sm_90 --out DIR`` (the table) and
``python -m harness.gpu_profile readme RUN_DIR`` (the README paragraph for a run).
"""
