from harness.results.feature_runs import latest_run


def test_latest_run_picks_the_newest_folder_of_the_suite(tmp_path):
    for name in ("20261201T100000Z-sde-vm", "20261202T100000Z-sde-vm", "20261203T100000Z-gpu-quick-h100",
                 "20261204T100000Z-sde-vm"):
        (tmp_path / name).mkdir()
    for name in ("20261201T100000Z-sde-vm", "20261202T100000Z-sde-vm", "20261203T100000Z-gpu-quick-h100"):
        (tmp_path / name / "results.csv").write_text("x\n")
    # the 12-04 folder has no results.csv (an empty or broken run): not chosen
    assert latest_run("sde", tmp_path).name == "20261202T100000Z-sde-vm"
    assert latest_run("gpu-quick", tmp_path).name == "20261203T100000Z-gpu-quick-h100"
    assert latest_run("sizes", tmp_path) is None
    assert latest_run("sde", tmp_path / "missing") is None
