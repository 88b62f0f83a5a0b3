"""Suite files: every shipped suite is valid; bad files give one clear error naming file and key."""
from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.run.suites import load_suite, suite_names
from problems.kinds import kind_of
from problems.registry import get_problem, problem_names
from solvers.base import Backend
from solvers.registry import MANIFEST, backend_names, methods_of, variants_of

SHIPPED = ("smoke", "cpu", "gpu-quick", "paper", "nightly")


def test_the_expected_suites_are_shipped():
    assert set(SHIPPED) <= set(suite_names())


#: Variant names a suite may use before their backends declare them (none now). The test below
#: fails once a backend declares one, so a name listed here cannot outlive its arrival.
PENDING_VARIANTS: set[tuple[str, str]] = set()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suite_expands_to_cells_with_existing_names(name):
    suite = load_suite(name)
    assert suite.cells and suite.description
    for c in suite.cells:
        assert c.spec.problem in problem_names()
        assert c.backend in backend_names()
        methods = methods_of(c.backend)
        assert c.spec.method in methods, (c.label, sorted(methods))
        assert c.spec.mode in methods[c.spec.method], c.label
        declared = variants_of(c.backend)
        if (c.backend, c.spec.variant) in PENDING_VARIANTS:
            assert c.spec.variant not in declared, f"{c.label}: now declared, remove it from PENDING_VARIANTS"
        else:
            assert c.spec.variant in declared, c.label
        assert c.spec.n > 0 and c.repeats >= 1 and c.timeout_s > 0
    assert [c.key for c in load_suite(name).cells] == [c.key for c in suite.cells]  # deterministic
    assert len({c.key for c in suite.cells}) == len(suite.cells)  # no cell twice


def test_suite_devices():
    assert load_suite("smoke").device == load_suite("cpu").device == "cpu"
    assert load_suite("gpu-quick").device == load_suite("paper").device == "gpu"


def test_paper_suite_spans_the_papers_sizes():
    ns = {c.spec.n for c in load_suite("paper").cells if c.spec.device == "gpu"}
    assert {8 * 4 ** k for k in range(11)} <= ns


def test_smoke_runs_every_problem_backend_and_mode():
    """Each (problem, backend, mode) that a backend can run is in the smoke suite at N = 8."""
    have = {(c.spec.problem, c.backend, c.spec.mode) for c in load_suite("smoke").cells}
    assert all(c.spec.n == 8 for c in load_suite("smoke").cells)
    missing = []
    stiff_methods = Backend.stiff_methods
    for backend in backend_names():
        for problem in problem_names():
            prob = get_problem(problem)
            if getattr(prob, "grid_sizes", ""):
                continue  # N restricted to a grid (crn_sigmagen: 1680 k^2): not a smoke cell at N = 8
            for method, modes in MANIFEST[backend]["kinds"].get(kind_of(prob).name, {}).items():
                if prob.stiff and method not in stiff_methods:
                    continue
                if not prob.stiff and method in stiff_methods:
                    continue  # stiff solvers are for the stiff problem
                for mode in modes:
                    if mode == "fixed" and prob.dt is None:
                        continue  # the problem has no fixed-step protocol
                    if (problem, backend, mode) not in have:
                        missing.append((problem, backend, mode))
    assert not missing, sorted(set(missing))


# ---- strict validation -----------------------------------------------------------------------

GOOD_ENTRY = """
[[entries]]
problem = "lorenz"
backends = ["fused", "array"]
methods = ["tsit5"]
modes = ["fixed", "adaptive"]
"""
HEAD = 'description = "t"\ndevice = "cpu"\n'


def write(tmp_path, text: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    ("description = \n", "bad.toml: malformed TOML"),
    (HEAD + "colour = 1\n" + GOOD_ENTRY + "n = [8]\n", "bad.toml: top level: unknown key 'colour'; valid choices: cell_timeout_s, companions, description"),
    ('device = "cpu"\n' + GOOD_ENTRY + "n = [8]\n", "bad.toml: top level: missing required key 'description'"),
    ('description = "t"\ndevice = "tpu"\n' + GOOD_ENTRY + "n = [8]\n", "bad.toml: device: unknown value 'tpu'; valid choices: cpu, gpu"),
    (HEAD + "repeats = 0\n" + GOOD_ENTRY + "n = [8]\n", "bad.toml: repeats: must be an integer >= 1"),
    (HEAD + "kernel_costs = 1\n" + GOOD_ENTRY + "n = [8]\n", "bad.toml: kernel_costs: must be true or false, got 1"),
    (HEAD + "entries = []\n", "bad.toml: entries: must be a non-empty array"),
    (HEAD + GOOD_ENTRY + "n = [8]\nnn = 3\n", "bad.toml: entries[0]: unknown key 'nn'; valid choices: atol, backends"),
    (HEAD + GOOD_ENTRY.replace('"lorenz"', '"lorentz"') + "n = [8]\n", "bad.toml: entries[0].problem: unknown value 'lorentz'; valid choices: lorenz, robertson, sir"),
    (HEAD + GOOD_ENTRY.replace('"array"', '"arrays"') + "n = [8]\n", "bad.toml: entries[0].backends: unknown value 'arrays'; valid choices: fused, array"),
    (HEAD + GOOD_ENTRY.replace('"tsit5"', '"tsit6"') + "n = [8]\n", "bad.toml: entries[0].methods: no backend of this entry has method 'tsit6'; valid choices: "),
    (HEAD + GOOD_ENTRY.replace('"fixed", ', '"fixd", ') + "n = [8]\n", "bad.toml: entries[0].modes: unknown value 'fixd'; valid choices: fixed, adaptive"),
    (HEAD + GOOD_ENTRY.replace('["fused", "array"]', '"fused"') + "n = [8]\n", "bad.toml: entries[0].backends: must be a non-empty list of strings"),
    (HEAD + GOOD_ENTRY + "n = [8, 0]\n", "bad.toml: entries[0].n: must be an integer >= 1, got 0"),
    (HEAD + GOOD_ENTRY + "n = [-8]\n", "bad.toml: entries[0].n: must be an integer >= 1, got -8"),
    (HEAD + GOOD_ENTRY + "n = [1.5]\n", "bad.toml: entries[0].n: must be an integer >= 1, got 1.5"),
    (HEAD + GOOD_ENTRY + "n = [true]\n", "bad.toml: entries[0].n: must be an integer >= 1, got True"),
    (HEAD + GOOD_ENTRY, "bad.toml: entries[0]: give exactly one of 'n'"),
    (HEAD + GOOD_ENTRY + "n = [8]\nn_range = { min = 8, max = 64 }\n", "bad.toml: entries[0]: give exactly one of 'n'"),
    (HEAD + GOOD_ENTRY + "n_range = { min = 8, top = 64 }\n", "bad.toml: entries[0].n_range: unknown key 'top'; valid choices: factor, max, min"),
    (HEAD + GOOD_ENTRY + "n = [8]\nn_max = { scipy = 8 }\n", "bad.toml: entries[0].n_max: unknown key 'scipy'; valid choices: array, fused"),
    (HEAD + GOOD_ENTRY + "n = [8]\nrtol = [1e-3, 1e-4]\natol = [1e-3, 1e-4, 1e-5]\n", "bad.toml: entries[0]: rtol and atol lists are paired"),
    (HEAD + GOOD_ENTRY + "n = [8]\nrtol = -1e-3\n", "bad.toml: entries[0].rtol: must be a positive number, got -0.001"),
    (HEAD + GOOD_ENTRY + "n = [8]\ndt = 0.3\n", "bad.toml: entries[0]: fixed tsit5 N=8: dt=0.3 does not divide the time span"),
    (HEAD + GOOD_ENTRY + 'n = [8]\nvariant = "turbo"\n', "bad.toml: entries[0].variant: no backend of this entry has variant 'turbo'"),
    (HEAD + GOOD_ENTRY + 'n = [8]\ndtype = "float16"\n', "bad.toml: entries[0].dtype: unknown value 'float16'; valid choices: float32, float64"),
])
def test_bad_suite_files_are_refused_with_one_line(tmp_path, text, expected):
    with pytest.raises(UsageError) as info:
        load_suite(str(write(tmp_path, text)))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(expected), message


def test_only_the_cpu_suite_records_kernel_costs():
    """Issue 29: the committed cpu run's fingerprint carries the fused kernels' step costs."""
    assert load_suite("cpu").kernel_costs
    assert not load_suite("smoke").kernel_costs


def test_unknown_suite_name_lists_the_suites():
    with pytest.raises(UsageError, match=r"unknown suite 'nope'; valid choices: .*smoke"):
        load_suite("nope")


# ---- expansion --------------------------------------------------------------------------------

def test_expansion_order_ranges_caps_and_tolerance_pairs(tmp_path):
    path = write(tmp_path, HEAD + """
[[entries]]
problem = "lorenz"
backends = ["fused", "array"]
methods = ["tsit5"]
modes = ["fixed", "adaptive"]
n_range = { min = 8, max = 512 }
n_max = { array = 32 }
rtol = [1e-4, 1e-6]
atol = 1e-7

[[entries]]
problem = "lorenz"
backends = ["fused"]
methods = ["tsit5"]
modes = ["fixed"]
n = [512, 8]
""")
    cells = load_suite(str(path)).cells
    got = [(c.backend, c.spec.mode, c.spec.tol if c.spec.mode == "adaptive" else None, c.spec.n) for c in cells]
    fused_ns = [8, 32, 128, 512]
    want = ([("fused", "fixed", None, n) for n in fused_ns]
            + [("fused", "adaptive", (1e-4, 1e-7), n) for n in fused_ns]
            + [("fused", "adaptive", (1e-6, 1e-7), n) for n in fused_ns]
            + [("array", "fixed", None, n) for n in (8, 32)]
            + [("array", "adaptive", (1e-4, 1e-7), n) for n in (8, 32)]
            + [("array", "adaptive", (1e-6, 1e-7), n) for n in (8, 32)])
    assert got == want  # the second entry repeats fused fixed cells: they run once
    assert {c.key_fields()["rtol"] for c in cells if c.spec.mode == "fixed"} == {None}


def test_same_cell_with_different_settings_is_an_error(tmp_path):
    path = write(tmp_path, HEAD + GOOD_ENTRY + "n = [8]\n" + GOOD_ENTRY + "n = [8]\nmax_steps = 10\n")
    with pytest.raises(UsageError, match=r"bad.toml: entries\[1\]: cell lorenz fused tsit5 fixed .* also defined by entries\[0\]"):
        load_suite(str(path))


def test_entry_overrides_device_and_timing(tmp_path):
    path = write(tmp_path, HEAD + "repeats = 4\n" + GOOD_ENTRY + 'n = [8]\ndevice = "gpu"\nrepeats = 2\ncell_timeout_s = 5\n')
    cells = load_suite(str(path)).cells
    assert {(c.spec.device, c.repeats, c.warmups, c.timeout_s) for c in cells} == {("gpu", 2, 1, 5.0)}
