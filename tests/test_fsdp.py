"""`moon train --fsdp` (FSDP2 on gloo, 2 CPU processes) against DDP, and a 2-node torchrun simulation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from conftest import moon_subprocess, run_moon

STEPS = 5


def _torchrun(pairs, catalog, out, *extra, port, nproc=2):
    cmd = (f"OMP_NUM_THREADS=1 torchrun --nproc_per_node {nproc} --master_port {port} -m moon_cli.cli train {pairs} "
           f"--catalog {catalog} -o {out} --steps {STEPS} --batch-size 4 --val-every 0 --queue-size 0 "
           f"--checkpoint-every 3 --quiet " + " ".join(map(str, extra)))
    r = moon_subprocess(cmd, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    return out


def losses(out):
    return [rec["loss"] for rec in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in rec]


@pytest.fixture(scope="module")
def runs(world_template, mined_pairs, tmp_path_factory):
    d = tmp_path_factory.mktemp("fsdp")
    cat = world_template / "catalog.parquet"
    return {"ddp": _torchrun(mined_pairs, cat, d / "ddp", port=29541),
            "fsdp": _torchrun(mined_pairs, cat, d / "fsdp", "--fsdp", port=29542),
            "inputs": (mined_pairs, cat), "dir": d}


@pytest.mark.scale
def test_fsdp_losses_and_weights_equal_ddp(runs):
    assert len(losses(runs["fsdp"])) == STEPS
    np.testing.assert_allclose(losses(runs["fsdp"]), losses(runs["ddp"]), atol=1e-4)
    a, b = load_file(runs["ddp"] / "model.safetensors"), load_file(runs["fsdp"] / "model.safetensors")
    assert a.keys() == b.keys() and any(".experts." in k for k in a)  # the full model, guided MoE included
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    ckpt = runs["fsdp"] / "checkpoints" / "step-000003"
    assert (ckpt / "optimizer-rank0.pt").is_file() and (ckpt / "optimizer-rank1.pt").is_file()


@pytest.mark.scale
def test_an_fsdp_checkpoint_embeds_like_a_ddp_one(runs, world_template, tmp_path):
    import pyarrow.parquet as pq

    vecs = []
    for name in ("ddp", "fsdp"):
        out = tmp_path / f"{name}.parquet"
        r = run_moon("embed", world_template / "catalog.parquet", "-m", runs[name], "-o", out, "-q")
        assert r.exit_code == 0, r.output
        vecs.append(np.array(pq.read_table(out).column("vector").to_pylist()))
    np.testing.assert_allclose(vecs[1], vecs[0], atol=1e-4)


@pytest.mark.scale
def test_fsdp_resumes_exactly(runs):
    pairs, cat = runs["inputs"]
    out = runs["dir"] / "resumed"
    _torchrun(pairs, cat, out, "--fsdp", "--stop-at-step", 3, port=29543)
    _torchrun(pairs, cat, out, "--fsdp", "--resume", port=29544)
    np.testing.assert_allclose(losses(out), losses(runs["fsdp"]), atol=1e-5)


@pytest.mark.scale
def test_fsdp_with_gradcache_takes_the_same_steps(runs):
    pairs, cat = runs["inputs"]
    out = _torchrun(pairs, cat, runs["dir"] / "gradcache", "--fsdp", "--grad-cache", "--chunk-size", 2, port=29545)
    np.testing.assert_allclose(losses(out), losses(runs["fsdp"]), atol=1e-4)


def test_fsdp_without_torchrun_says_how_to_launch(world_template, mined_pairs, tmp_path):
    out = tmp_path / "m"
    r = run_moon("train", mined_pairs, "--catalog", world_template / "catalog.parquet", "-o", out, "--steps", 1,
                 "--fsdp")
    assert r.exit_code == 1 and "torchrun" in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.scale
def test_two_nodes_of_two_processes_gather_every_rank(world_template, mined_pairs, tmp_path):
    """Two torchrun agents (--nnodes 2, c10d rendezvous on 127.0.0.1) stand for two machines: 4 ranks."""
    out = tmp_path / "two-nodes"
    common = (f"OMP_NUM_THREADS=1 torchrun --nnodes 2 --nproc_per_node 2 --rdzv_backend c10d "
              f"--rdzv_endpoint 127.0.0.1:29561 --rdzv_id moon-test -m moon_cli.cli train {mined_pairs} "
              f"--catalog {world_template / 'catalog.parquet'} -o {out} --steps 2 --batch-size 2 --val-every 0 "
              f"--queue-size 0 --quiet")
    agents = [subprocess.Popen(common, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
              for _ in range(2)]
    results = [a.communicate(timeout=600) for a in agents]
    assert all(a.returncode == 0 for a in agents), results[0][1].decode()[-2000:] + results[1][1].decode()[-2000:]
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert [rec["gathered"] for rec in steps] == [6, 6]  # the other 3 ranks' positives, both "nodes"
    assert all(rec["pool"] == 8 for rec in steps)


def _env():
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
