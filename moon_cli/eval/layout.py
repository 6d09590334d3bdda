"""The run folders of `make reproduce` and `make scaling`, defined once: where each step writes, and so where
`moon report` reads. The shell scripts ask for their paths (``eval "$(moon report layout reproduce)"`` gives them
``layout NAME FIELD...``), so writer and reader cannot drift apart.

    RunLayout("reproduce", "runs/reproduce").path("model", seed=0, version="no-moe")
        → runs/reproduce/seed0/no-moe/model
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from moon_cli.errors import MoonError

# name → path template under the run folder; a {field} is filled in by the writer (in this order, positionally,
# from the shell) and matched by the reader
LAYOUTS: dict[str, dict[str, str]] = {
    "reproduce": {
        "world": "world",  # a synthetic world (unless DATA names one)
        "detector": "detector",
        "detections": "detections.parquet",
        "pairs": "pairs.parquet",
        "negatives": "negatives.parquet",
        "feature-cache": "feature-cache",  # the frozen vision tower's features, shared by every run (mini)
        "seed": "seed{seed}",
        "model": "seed{seed}/{version}/model",  # version: a variant, or "pretrain" (stage 1, shared by a seed's rows)
        "train-log": "seed{seed}/{version}.train.log",
        "seconds": "seed{seed}/{version}.seconds",  # the training's wall time
        "eval": "seed{seed}/eval/{version}",  # `moon evaluate -o`: metrics.json, report.md
        "metrics": "seed{seed}/eval/{version}/metrics.json",
        "baseline-log": "{version}.log",
        "embeddings": "emb/{version}.parquet",  # the catalogue, for `moon ctr`
        "ctr": "ctr",
        "ctr-report": "ctr/ctr.json",
        "exchange": "exchange.json",
        "real-photos": "real-photos",  # benchmarks/bench_real.py's folder: bench/, report.md
        "real-photos-log": "real-photos.log",
        "results": "results.md",
    },
    "scaling": {
        "world": "world",
        "detector": "detector",
        "detections": "detections.parquet",
        "pairs": "pairs.parquet",
        "negatives": "negatives.parquet",
        "point": "{sweep}/{x}",  # sweep: tokens (x = samples seen) or negatives (x = the negative pool)
        "point-model": "{sweep}/{x}/model",
        "point-log": "{sweep}/{x}.log",
        "point-eval": "{sweep}/{x}/eval",
        "point-metrics": "{sweep}/{x}/eval/metrics.json",
        "embeddings": "emb.parquet",
        "ctr": "ctr",
        "ctr-report": "ctr/ctr.json",
        "results": "scaling.md",
    },
}
FIELD = re.compile(r"\{(\w+)\}")


class RunLayout:
    def __init__(self, kind: str, root: str | Path):
        if kind not in LAYOUTS:
            raise MoonError(f"no run layout '{kind}'; known: {', '.join(LAYOUTS)}")
        self.kind, self.root, self.templates = kind, Path(root), LAYOUTS[kind]

    def fields(self, name: str) -> list[str]:
        return FIELD.findall(self._template(name))

    def path(self, name: str, **fields) -> Path:
        return self.root / self._template(name).format(**{k: str(v) for k, v in fields.items()})

    def find(self, name: str) -> list[tuple[dict[str, str], Path]]:
        """Every path of ``name`` that exists, with the fields it was written with (sorted by path)."""
        template = self._template(name)
        pattern = re.compile("".join(f"(?P<{p}>[^/]+)" if i % 2 else re.escape(p)
                                     for i, p in enumerate(FIELD.split(template))) + "$")
        found = []
        for path in sorted(self.root.glob(FIELD.sub("*", template))):
            m = pattern.match(path.relative_to(self.root).as_posix())
            if m:
                found.append((m.groupdict(), path))
        return found

    def shell(self, root_var: str = "run") -> str:
        """A bash function ``layout NAME FIELD...`` that prints each path under ``$root_var``."""
        lines = [f"layout() {{  # layout NAME FIELD...: a path of this {self.kind} run folder "
                 f"(moon_cli/eval/layout.py)",
                 '  case "$1" in']
        for name, template in self.templates.items():
            args = {f: f"${{{i + 2}:?layout {name}: {f} missing}}" for i, f in enumerate(self.fields(name))}
            lines.append(f'    {shlex.quote(name)}) echo "${root_var}/{template.format(**args)}" ;;')
        lines += [f'    *) echo "layout: no path \'$1\' in the {self.kind} layout" >&2; return 2 ;;', "  esac", "}"]
        return "\n".join(lines) + "\n"

    def _template(self, name: str) -> str:
        if name not in self.templates:
            raise MoonError(f"the {self.kind} layout has no path '{name}'; known: {', '.join(self.templates)}")
        return self.templates[name]
