"""The files that make a checkpoint directory loadable by sentence-transformers (see moon_cli.model.st).

Kept apart from the module itself: writing them needs no sentence-transformers, which is an optional extra.
"""

from __future__ import annotations

import json
from pathlib import Path

CLASS_REF = "moon_cli.model.st.MoonModule"


def write_sentence_transformers_files(directory: Path) -> None:
    """What sentence-transformers reads to load a checkpoint directory (written beside the weights)."""
    from moon_cli import __version__

    (directory / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": CLASS_REF}],
                                                      indent=2) + "\n")
    (directory / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "SentenceTransformer", "__version__": {"moon_cli": __version__},
        "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2) + "\n")
