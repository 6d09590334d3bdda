import json

import numpy as np
import pytest

from conftest import run_moon
from moon_cli.eval.exchange import exchange_rates, fit


def test_fit_recovers_a_line_and_rank_agreement():
    x = np.array([0.1, 0.2, 0.3, 0.5])
    f = fit(x, 0.02 * x + 0.001)
    assert f["slope"] == pytest.approx(0.02) and f["r2"] == pytest.approx(1.0) and f["spearman"] == pytest.approx(1.0)
    assert fit(x, -x)["spearman"] == pytest.approx(-1.0)
    assert fit(np.array([0.2, 0.2, 0.2]), np.array([1.0, 2.0, 3.0]))["slope"] is None  # no spread: no rate


def _version(tmp_path, label, image, text, gain, seq_len=8):
    d = tmp_path / label
    d.mkdir()
    metrics = {"label": label, "retrieval": {"image_to_product": {"recall@10": image},
                                             "text_to_product": {"recall@10": text}},
               "classification": {"level1": {"accuracy": 0.5}}, "attributes": {}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    return d, {"variant": label, "seq_len": seq_len, "delta_auc": gain, "delta_gauc": gain}


def test_exchange_rate_names_the_metric_that_orders_the_versions(tmp_path):
    specs = [("v1", 0.1, 0.9, 0.001), ("v2", 0.2, 0.5, 0.004), ("v3", 0.4, 0.7, 0.006), ("v4", 0.5, 0.6, 0.011)]
    dirs, summary = zip(*(_version(tmp_path, *s) for s in specs))
    (tmp_path / "ctr").mkdir()
    (tmp_path / "ctr" / "ctr.json").write_text(json.dumps({"summary": list(summary)}))
    out = tmp_path / "rates.json"
    r = run_moon("exchange-rate", *dirs, "--ctr", tmp_path / "ctr", "-o", out)
    assert r.exit_code == 0, r.output
    rates = json.loads(out.read_text())
    assert rates["best"] == "image_to_product" and rates["seq_len"] == 8
    first = r.stdout.splitlines()[2]
    assert first.startswith("| image→product |")
    by_metric = {x["metric"]: x for x in rates["rates"]}
    assert by_metric["image_to_product"]["spearman"] == pytest.approx(1.0)
    assert by_metric["classification"]["slope"] is None  # the same for every version
    r = run_moon("exchange-rate", *dirs, "--ctr", tmp_path / "ctr", "-o", out)  # never silently replaced
    assert r.exit_code == 1 and "--overwrite" in r.output and json.loads(out.read_text()) == rates
    assert run_moon("exchange-rate", *dirs, "--ctr", tmp_path / "ctr", "-o", out, "--overwrite").exit_code == 0

    r = run_moon("exchange-rate", *dirs[:2], "--ctr", tmp_path / "ctr")
    assert r.exit_code == 1 and "at least 3" in r.output
    stray, _ = _version(tmp_path, "stray", 0.3, 0.3, 0.0)
    r = run_moon("exchange-rate", *dirs, stray, "--ctr", tmp_path / "ctr")
    assert r.exit_code == 1 and "'stray'" in r.output and "-e LABEL=" in r.output
    r = run_moon("exchange-rate", *dirs, "--ctr", tmp_path / "v1")
    assert r.exit_code == 1 and "no ctr.json" in r.output


def test_exchange_rates_leave_out_versions_a_metric_cannot_score():
    versions = [{"label": f"v{i}", "downstream": i * 0.01, "metrics": {"image_to_product": None if i == 0 else i * 0.1}}
                for i in range(4)]
    (row,) = exchange_rates(versions, ["image_to_product"])
    assert row["versions"] == 3 and row["labels"] == ["v1", "v2", "v3"]


def test_damaged_reports_are_named_not_tracebacks(tmp_path):
    specs = [("v1", 0.1, 0.9, 0.001), ("v2", 0.2, 0.5, 0.004), ("v3", 0.4, 0.7, 0.006)]
    dirs, summary = zip(*(_version(tmp_path, *s) for s in specs))
    (tmp_path / "ctr").mkdir()
    (tmp_path / "ctr" / "ctr.json").write_text('{"summary": [')
    r = run_moon("exchange-rate", *dirs, "--ctr", tmp_path / "ctr")
    assert r.exit_code == 1 and "ctr.json: not a readable JSON report" in r.output
    (tmp_path / "ctr" / "ctr.json").write_text(json.dumps({"summary": list(summary)}))
    (dirs[0] / "metrics.json").write_text("{")
    r = run_moon("exchange-rate", *dirs, "--ctr", tmp_path / "ctr")
    assert r.exit_code == 1 and "metrics.json: not a readable JSON report" in r.output
