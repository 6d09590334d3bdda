"""A real-photo bench from photographs that ship, with human-written names and descriptions, in Debian packages.

    python benchmarks/real_photos.py OUT_DIR [--debs DIR]

Sources (downloaded with `apt-get download` into --debs unless already there; nothing else is fetched):

- ``gcompris-qt-data`` (GCompris, GPL-3.0; photos from Wikimedia Commons and publicdomainpictures.net, CC0 /
  public domain / CC BY-SA as their READMEs say): the photos of the categorization activity (tools, renewable
  energy, monuments, fishes, household objects), of the erase activity (animals), and of the explore
  activities (world animals, farm animals, monuments, world music), the solar-system bodies and the Louis
  Braille story. Each photo's name is GCompris's (its title in the activity, else its file name) and, for
  the categorization photos, the title of the source file its README credits.
- ``kalzium-data`` (Kalzium, GPL-2.0): its photos of laboratory equipment, named in its tools.xml.

The photos are read from the packages' Qt resource files (GCompris) and folders (Kalzium); names and
descriptions are the packages' own words, never written from the pixels. OUT_DIR gets three benches that
`moon evaluate` reads:

    OUT_DIR/photos/...                 the photos (PNG where they have transparency, else JPEG)
    OUT_DIR/photos.parquet             id, path, name, description, source, credit
    OUT_DIR/text-to-photo/             gallery: the photos alone; text queries: each photo's description
    OUT_DIR/photo-to-text/             gallery: the descriptions alone; image queries: the photos
    OUT_DIR/photo-to-photo/            gallery: the photos; image queries: a centre crop and a mirror of each

A description shared by two photos is kept for the first only (one relevant item per query).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

PACKAGES = ("gcompris-qt-data", "kalzium-data")
GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc"
KALZIUM = "usr/share/kalzium/data"
# categorization folders → what the photos are (GCompris's category names, singular)
CATEGORIES = {"tools": "tool", "renewable": "renewable energy", "monuments": "monument", "fishes": "fish",
              "others": "household object"}
EXPLORE = ("explore_world_animals", "explore_farm_animals", "explore_monuments", "explore_world_music",
           "solar_system", "louis-braille")
MAX_SIDE = 512


# ----------------------------------------------------------------------------------------------- Qt resources
def read_rcc(path: Path) -> dict[str, bytes]:
    """The files of a Qt binary resource (.rcc, format 1-3): path → bytes (zlib-compressed entries inflated)."""
    b = path.read_bytes()
    if b[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", b[4:20])
    node = 22 if version >= 2 else 14  # version 2 added a modification time to every node

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", b[names + offset:names + offset + 2])
        return b[names + offset + 6:names + offset + 6 + 2 * n].decode("utf-16-be")

    files: dict[str, bytes] = {}

    def walk(i: int, prefix: str) -> None:
        at = tree + i * node
        name_offset, flags = struct.unpack(">IH", b[at:at + 6])
        here = name(name_offset) if i else ""
        if flags & 2:  # a directory: its children are consecutive nodes
            count, first = struct.unpack(">II", b[at + 6:at + 14])
            for c in range(count):
                walk(first + c, f"{prefix}{here}/")
            return
        (offset,) = struct.unpack(">I", b[at + 10:at + 14])
        (size,) = struct.unpack(">I", b[data + offset:data + offset + 4])
        blob = b[data + offset + 4:data + offset + 4 + size]
        if flags & 1:  # qCompress: a 4-byte length, then zlib
            blob = zlib.decompress(blob[4:])
        elif flags & 4:
            return  # zstd: not used by these packages
        files[f"{prefix}{here}"] = blob

    walk(0, "")
    return files


def words(identifier: str) -> str:
    """"measuringTape3" → "measuring tape", "red_panda" → "red panda", "Claw-hammer" → "claw hammer"."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", identifier)
    text = re.sub(r"[_\-]+", " ", re.sub(r"\d+$", "", text))
    return " ".join(text.split()).lower()


def source_title(url: str | None) -> str | None:
    """The human-written title of a credited source: a Commons file name, a publicdomainpictures picture name."""
    if not url:
        return None
    from urllib.parse import unquote

    url = unquote(url)
    m = re.search(r"File:(.+?)\.(?:jpe?g|png|gif|svg|tiff?)$", url, re.I)
    title = m.group(1) if m else (re.search(r"picture=([^&]+)", url) or [None, None])[1]
    if not title:
        return None
    title = re.sub(r"\(\d{6,}\)|\bDSC\d+|\bIMG[_ ]\d+|\d{4}-\d\d-\d\d|\b[A-Z]{2,}[-_ ]?\d[\w.-]*", " ", title)
    title = " ".join(re.sub(r"[_\-]+", " ", title).split()).strip(" ,.")
    return title if re.search(r"[A-Za-z]{3}", title) else None


def _credits(files: dict[str, bytes], folder: str) -> dict[str, str]:
    """photo file name → the source URL its folder's README credits."""
    readme = files.get(f"{folder}/README")
    out: dict[str, str] = {}
    for block in (readme.decode("utf-8", "replace").split("\n\n") if readme else []):
        src = re.search(r"Source:\s*(\S+)", block)
        for name in re.findall(r"^(\S+\.webp)\s*$", block, re.M):
            if src:
                out[name] = src.group(1)
    return out


def _one_line(sentence: str, max_words: int = 24) -> str:
    """A description one line long: its first ``max_words`` words."""
    w = sentence.split()
    return " ".join(w[:max_words]) + (" …" if len(w) > max_words else "")


def _qsTr(chunk: str, key: str) -> str | None:
    m = re.search(rf'"{key}"\s*:\s*qsTr\("((?:[^"\\]|\\.)*)"\)', chunk)
    return m.group(1).replace('\\"', '"') if m else None


def gcompris_photos(rcc_dir: Path):
    """(name, description, source, photo bytes, credit) for each labelled GCompris photo."""
    cat = read_rcc(rcc_dir / "categorization.rcc")
    base = "/gcompris/src/activities/categorization/resource/images"
    for folder, kind in CATEGORIES.items():
        credits = _credits(cat, f"{base}/{folder}")
        for path in sorted(k for k in cat if k.startswith(f"{base}/{folder}/") and k.endswith(".webp")):
            file = path.rsplit("/", 1)[1]
            name = words(file[:-5])
            title = source_title(credits.get(file))
            extra = f": {title}" if title and title.lower() != name else ""
            head = name if name == kind else f"{name} ({kind})"
            yield name, f"{head}{extra}", f"gcompris/categorization/{folder}", cat[path], credits.get(file)
    erase = read_rcc(rcc_dir / "erase.rcc")
    for path in sorted(k for k in erase if k.endswith(".webp")):
        name = words(path.rsplit("/", 1)[1][:-5])
        yield name, f"{name} (animal)", "gcompris/erase", erase[path], None
    for activity in EXPLORE:
        files = read_rcc(rcc_dir / f"{activity}.rcc")
        sources = "\n".join(v.decode("utf-8", "replace") for k,
                            v in sorted(files.items()) if k.endswith((".qml", ".js")))
        by_name = {k.rsplit("/", 1)[1]: k for k in files if k.endswith(".webp")}
        for chunk in re.split(r"\n\s*\},?\s*\n", sources):  # one entry of a board's list per chunk
            photo = (re.search(r'"(?:image2|realImg|image)"\s*:\s*"qrc:/[^"]*?([^/"]+\.webp)"', chunk)
                     or re.search(r'"img"\s*:\s*\w+\s*\+\s*"([^"]+\.webp)"', chunk))
            title = _qsTr(chunk, "title") or _qsTr(chunk, "bodyName")
            text = _qsTr(chunk, "text") or ""
            if not photo or photo.group(1) not in by_name or not (title or text):
                continue
            first = _one_line(re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]) if text else ""
            title_adds = title and first and title.lower() not in first.lower()[: len(title) + 12]
            description = f"{title}: {first}" if title_adds else (first or title)
            yield title or words(photo.group(1)[:-5]), description, f"gcompris/{activity}", \
                files[by_name[photo.group(1)]], None


def kalzium_photos(data_dir: Path):
    import xml.etree.ElementTree as ET

    for item in ET.parse(data_dir / "tools.xml").getroot().iter("item"):
        picture, name = item.findtext("picture"), (item.findtext("name") or "").strip()
        path = data_dir / "toolpics" / (picture or "")
        if picture and name and path.is_file():
            yield name, f"{name} (laboratory equipment)", "kalzium/toolpics", path.read_bytes(), None


# ----------------------------------------------------------------------------------------------- the benches
def fetch(debs: Path) -> dict[str, Path]:
    """Each package's unpacked tree, downloading the .deb with apt-get when it is not in ``debs`` yet."""
    debs.mkdir(parents=True, exist_ok=True)
    trees = {}
    for package in PACKAGES:
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            try:
                subprocess.run(["apt-get", "download", package], cwd=debs, check=True, capture_output=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                sys.exit(f"real_photos: could not download {package} with apt-get ({exc}); put its .deb in {debs}")
            found = sorted(debs.glob(f"{package}_*.deb"))
        tree = debs / package
        if not tree.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=debs))
            subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(tmp)], check=True)
            tmp.rename(tree)
        trees[package] = tree
    return trees


def save_photo(blob: bytes, out: Path) -> Path:
    from PIL import Image

    img = Image.open(io.BytesIO(blob))
    img.load()
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    out = out.with_suffix(".png" if alpha else ".jpg")
    out.parent.mkdir(parents=True, exist_ok=True)
    if alpha:
        img.convert("RGBA").save(out)
    else:
        img.convert("RGB").save(out, quality=92)
    return out


def _catalog(rows: list[dict], photos: bool, text: bool):
    import pyarrow as pa

    from moon_cli.contracts import CATALOG

    return pa.table({"item_id": [r["id"] for r in rows],
                     "title": [r["description"] if text else None for r in rows],
                     "category_path": [[] for _ in rows], "attributes": [[] for _ in rows],
                     "image_paths": [[r["path"]] if photos else [] for r in rows]}, schema=CATALOG.schema)


def _queries(rows: list[dict], text: bool, images: list[str] | None = None, suffix: str = ""):
    import pyarrow as pa

    from moon_cli.contracts import QUERIES

    return pa.table({"query_id": [f"{r['id']}{suffix}" for r in rows],
                     "query_text": [r["description"] if text else None for r in rows],
                     "query_image": images if images is not None else [None] * len(rows),
                     "item_id": [r["id"] for r in rows]}, schema=QUERIES.schema)


def write_bench(directory: Path, gallery, task: str, queries, note: str) -> None:
    from moon_cli.contracts import CATALOG, QUERIES
    from moon_cli.io import make_manifest, write_table

    directory.mkdir(parents=True, exist_ok=True)
    manifest = make_manifest("real_photos", {"bench": directory.name})
    write_table(gallery, directory / "gallery.parquet", contract=CATALOG, manifest=manifest, overwrite=True)
    name = {"text_to_product": "text_queries.parquet", "image_to_product": "image_queries.parquet"}[task]
    write_table(queries, directory / name, contract=QUERIES, manifest=manifest, overwrite=True)
    (directory / "bench.json").write_text(json.dumps({"gallery": "gallery.parquet", "tasks": {task: name},
                                                      "note": note}, indent=2) + "\n")


def build(out: Path, debs: Path) -> dict:
    from PIL import Image, ImageOps

    from moon_cli.io import write_table

    import pyarrow as pa

    trees = fetch(debs)
    entries = list(gcompris_photos(trees["gcompris-qt-data"] / GCOMPRIS_RCC))
    entries += list(kalzium_photos(trees["kalzium-data"] / KALZIUM))
    rows, seen = [], set()
    for name, description, source, blob, credit in entries:
        if description.lower() in seen:  # one relevant photo per description
            continue
        seen.add(description.lower())
        pid = f"r{len(rows):04d}"
        path = save_photo(blob, out / "photos" / source.replace("/", "-") / pid)
        rows.append({"id": pid, "path": str(path.relative_to(out)), "name": name, "description": description,
                     "source": source, "credit": credit})
    photos = pa.table({k: [r[k] for r in rows] for k in rows[0]})
    write_table(photos, out / "photos.parquet", overwrite=True)
    absolute = [{**r, "path": str(out / r["path"])} for r in rows]
    write_bench(out / "text-to-photo", _catalog(absolute, photos=True, text=False), "text_to_product",
                _queries(absolute, text=True), "text → photo: each photo's description finds the photo")
    write_bench(out / "photo-to-text", _catalog(absolute, photos=False, text=True), "image_to_product",
                _queries(absolute, text=False, images=[r["path"] for r in absolute]),
                "photo → text: each photo finds its own description among all of them")
    views = []
    for r in absolute:  # a centre crop (80 % of each side) and a mirror image of every photo
        img = Image.open(r["path"])
        w, h = img.size
        crop = img.crop((w // 10, h // 10, w - w // 10, h - h // 10))
        for kind, view in (("crop", crop), ("mirror", ImageOps.mirror(img))):
            p = out / "photo-to-photo" / "views" / f"{r['id']}-{kind}{Path(r['path']).suffix}"
            p.parent.mkdir(parents=True, exist_ok=True)
            view.save(p)
            views.append((r, str(p), kind))
    write_bench(out / "photo-to-photo", _catalog(absolute, photos=True, text=False), "image_to_product",
                pa.concat_tables([_queries([r], text=False, images=[p], suffix=f"-{kind}") for r, p, kind in views]),
                "photo → photo: a centre crop and a mirror image of each photo find the photo")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    summary = {"photos": len(rows), "sources": counts, "packages": list(PACKAGES)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--debs", type=Path, default=None, help="where the .deb files are kept [OUT/debs]")
    args = parser.parse_args(argv)
    summary = build(args.out.resolve(), (args.debs or args.out / "debs").resolve())
    print(json.dumps(summary, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
