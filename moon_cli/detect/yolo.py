"""Import ultralytics fully offline.

ultralytics phones home (hub checks, analytics) and downloads a font for its plots unless told
otherwise. Before importing it we set YOLO_OFFLINE, point YOLO_CONFIG_DIR at moon's own cache, put a
TTF font (matplotlib's DejaVuSans) where it looks for Arial.ttf, and turn analytics off.

Detector ``.pt`` files are pickles: by default ultralytics unpickles them in full, so a crafted file runs
code. ``ULTRALYTICS_SAFE_LOAD`` makes it load with ``weights_only=True`` against an allow-list of its own
model classes; moon always turns it on (a real detector still loads; a crafted one is refused).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# model yamls ship inside ultralytics; nothing pretrained can be downloaded, so we build from these
MODEL_YAMLS = ("yolov8n.yaml", "yolov8s.yaml", "yolo11n.yaml", "yolo11s.yaml")


def config_dir() -> Path:
    return Path(os.environ.get("YOLO_CONFIG_DIR") or Path.home() / ".cache" / "moon" / "ultralytics")


def offline_ultralytics():
    """Return the ``YOLO`` class with ultralytics configured for offline use."""
    cfg = config_dir()
    (cfg / "Ultralytics").mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # read when ultralytics is imported
    os.environ.setdefault("YOLO_VERBOSE", "False")
    font = cfg / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        import matplotlib

        shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)
    from ultralytics import YOLO, settings
    from ultralytics.nn import tasks

    tasks.SAFE_LOAD = True  # also when something imported ultralytics before the variable was set
    if settings.get("sync", True):
        settings.update({"sync": False})
    _restore_pil_open()
    return YOLO


def _restore_pil_open() -> None:
    """Undo ultralytics' patch of PIL.Image.open.

    On an unidentifiable file the patched open tries to pip-install a HEIF plugin (a network reach at
    run time) and then fails with ModuleNotFoundError; moon wants PIL's own UnidentifiedImageError so
    that a broken file becomes a clear per-row error.
    """
    from PIL import Image

    try:
        from ultralytics.utils import patches
    except ImportError:
        return
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original
