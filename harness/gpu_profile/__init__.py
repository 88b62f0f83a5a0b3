"""GPU evidence without a GPU: static profiles of compiled kernels and a time model.

Modules, each importing only those above it:

* ``tools``: finding and running ptxas, nvdisasm and nvcc;
* ``sass``: reading ``ptxas -v`` and ``nvdisasm`` output (registers, SASS mix, occupancy);
* ``kernels``: profile rows of any PTX or CUDA C++ kernel, and the content-hash disk cache;
* ``sources``: what to profile: every fused kernel (Numba), the hand-written C++ (cuda-cpp)
  kernel of each key that backend solves, the MPGOS variant (``fused_profiles``);
* ``cpu_asm``: the same counting on the CPU lane kernel's x86 assembly, and the measured FMA peak;
* ``model``: the GPU spec table (each number with its source) and the time models;
* ``compare``: the model against the paper's published times (figure, ratio table);
* ``section``: the report section (``report_section(run_dir, df)``) and ``readme_paragraph``;
* ``command``: the commands below.

Commands: ``python -m harness gpu-profile --arch sm_70,sm_75,sm_90 --out DIR`` (the table) and
``python -m harness.gpu_profile {readme RUN_DIR | sizes --out DIR | cpu-peak DIR}``.
"""
