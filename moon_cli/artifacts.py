"""What a directory artifact is and what it holds, for `moon inspect DIR` (tables are described by io.read_table).

Each kind is recognised by the file that only it writes:

    moon_index.json            an index (`moon index`)
    config.json + model.safetensors   a checkpoint (`moon train`, MoonModel.save_pretrained)
    metrics.json               an evaluation report (`moon evaluate`)
    ctr.json                   a CTR report (`moon ctr`)
    summary.json + weights.pt  a detector (`moon detect-train`)
    world.json                 a synthetic world (`moon synth`)
"""

from __future__ import annotations

import json
from pathlib import Path

from moon_cli.errors import MoonError

KINDS = ("index", "checkpoint", "report", "ctr-report", "detector", "world")


def _json(path: Path) -> dict:
    from moon_cli.io import read_json_report

    return read_json_report(path, (), f"the moon stage that wrote {path.parent}")


def _index(path: Path) -> dict:
    from moon_cli.index.lance import SearchSettings, open_table, read_info

    info = read_info(path)
    return {"rows": open_table(path).count_rows(), "model": info.get("model"), "model_id": info["model_id"],
            "dim": info["dim"], "index_type": info["index_type"],
            "search": SearchSettings.of(info).describe(), "recall@10": info.get("recall@10"),
            "recall_target": info.get("recall_target")}


def _checkpoint(path: Path) -> dict:
    from safetensors import safe_open

    from moon_cli.model.config import MoonConfig
    from moon_cli.model.resolve import WEIGHTS

    config = MoonConfig.load(path / "config.json")
    try:
        with safe_open(str(path / WEIGHTS), "pt") as f:
            params = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for damaged files
        raise MoonError(f"{path / WEIGHTS}: not a readable safetensors file ({exc}); restore or re-train it") from None
    meta = _json(path / "meta.json") if (path / "meta.json").is_file() else {}
    b = config.backbone
    return {"backbone": b.name, "family": b.family, "arch": b.arch, "moe": config.moe.enabled,
            "lora": config.lora.enabled, "pooling": config.pooling.mode, "saved_parameters": params,
            "objective": meta.get("objective"), "step": meta.get("step"), "temperature": meta.get("temperature"),
            "val": meta.get("val") or None, "evaluations": meta.get("evaluations") or None}


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _report(path: Path) -> dict:
    from moon_cli.eval.evaluate import headline
    from moon_cli.eval.report import load_metrics

    m = load_metrics(path)
    return {"label": m["label"], "model_id": m.get("model_id"), "bench": m.get("bench"), "headline": headline(m)}


def _ctr_report(path: Path) -> dict:
    summary = _json(path / "ctr.json").get("summary") or []
    return {"variants": sorted({r["variant"] for r in summary}), "seq_lens": sorted({r["seq_len"] for r in summary}),
            "results": summary}


def _detector(path: Path) -> dict:
    s = _json(path / "summary.json")
    return {k: s.get(k) for k in ("model", "epochs", "imgsz", "images", "map50", "map50_95", "heldout_mean_iou")}


def _world(path: Path) -> dict:
    return _json(path / "world.json")


def kind_of(path: Path) -> str | None:
    path = Path(path)
    if (path / "moon_index.json").is_file():
        return "index"
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return "checkpoint"
    if (path / "metrics.json").is_file():
        return "report"
    if (path / "ctr.json").is_file():
        return "ctr-report"
    if (path / "summary.json").is_file() and (path / "weights.pt").is_file():
        return "detector"
    if (path / "world.json").is_file():
        return "world"
    return None


def describe_dir(path: Path) -> dict:
    """{"source", "kind", ...what that kind holds}; a directory of no known kind is a one-line error."""
    kind = kind_of(path)
    if kind is None:
        raise MoonError(f"{path}: a directory, but not a moon artifact ({', '.join(KINDS)}); `moon inspect` "
                        f"takes one of those or a Parquet file")
    describe = {"index": _index, "checkpoint": _checkpoint, "report": _report, "ctr-report": _ctr_report,
                "detector": _detector, "world": _world}[kind]
    return {"source": str(path), "kind": kind, **describe(Path(path))}


def format_dir(info: dict) -> str:
    """Text for a terminal: the kind, then one 'key: value' line per field."""
    lines = [f"{info['source']}: {info['kind']}"]
    for key, value in info.items():
        if key in ("source", "kind") or value is None:
            continue
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        lines.append(f"  {key}: {shown}")
    return "\n".join(lines)
