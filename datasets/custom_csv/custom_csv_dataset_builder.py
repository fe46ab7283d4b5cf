"""custom_csv: your own labels in a CSV file, one column per head of your head spec.

The CSV (UTF-8, comma-separated, RFC 4180 quoting, a header line) has an image path column, one
column per head of a head spec (YAML/JSON, see ``fashion_keras.heads``) holding a class name or
nothing (= unlabelled for that head), optionally the four pixel bbox columns ``x1,y1,x2,y2`` and a
``split`` column (train/val/test; empty or absent: ``val_percent`` of the rows go to val by a hash
of the image path, the rest to train). Other columns are ignored.

The head spec is part of the builder config (the features are one ``ClassLabel`` per head), so
the builder is used through a config: the predefined ``example`` (the spec of ``dummy_data/``), a
config built from a spec file (``CustomCsvConfig(name=..., heads_file=...)``, also as JSON on the
``tfds build`` command line), or :func:`config_for_manual_dir`, which reads
``<manual_dir>/heads.yaml`` (or the heads given) and the CSV header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow_datasets.public_api as tfds
from etils import epath

from fashion_keras.heads import Head, HeadSpec, heads_from_dict, heads_to_dict, load_heads_file
from fashion_keras_datasets.common.builder import (
    SKIP_BAD_ROWS_SUFFIX,
    ValidatingBuilder,
    ValidatingConfig,
)
from fashion_keras_datasets.common.errors import AnnotationError, MissingFilesError, describe_dir
from fashion_keras_datasets.common.images import PreparedImage, hash_bucket
from fashion_keras_datasets.common.report import SkipReport
from fashion_keras_datasets.common.rows import (
    Row,
    normalize_image_path,
    parse_bbox,
    read_csv_rows,
    resolve_image_path,
)

SPLITS = ("train", "val", "test")  # also the duplicate order: train first
HEADS_FILES = ("heads.yaml", "heads.yml", "heads.json")
FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)
UNLABELLED = -1
#: The spec of dummy_data/ (its heads.yaml), for the predefined ``example`` config.
EXAMPLE_HEADS = {
    "heads": [
        {"name": "sleeve", "classes": ["long_sleeve", "short_sleeve", "sleeveless"]},
        {"name": "colour", "classes": ["black", "white", "red", "blue"], "loss_weight": 0.5},
    ]
}


@dataclasses.dataclass(eq=False)
class CustomCsvConfig(ValidatingConfig):
    """A user CSV and the head spec its columns follow.

    Attributes:
      heads_file: a YAML/JSON head spec, read when the config is created (into ``heads_json``).
      heads_json: the head spec as JSON (``{"heads": [...]}``); set this or ``heads_file``.
      csv_file: the CSV, relative to the manual folder.
      image_column: the column of image paths, relative to the manual folder.
      bbox_columns: the four pixel box columns ``x1 y1 x2 y2`` (used when all four exist).
      split_column: the column naming each row's split (used when it exists).
      val_percent: share of the rows without a split sent to val, by a hash of the image path.
    """

    heads_file: str = ""
    heads_json: str = ""
    csv_file: str = "labels.csv"
    image_column: str = "image"
    bbox_columns: Sequence[str] = ("x1", "y1", "x2", "y2")
    split_column: str = "split"
    val_percent: int = 10

    def __post_init__(self) -> None:
        if self.heads_file and not self.heads_json:
            heads = load_heads_file(self.heads_file)
            self.heads_json = json.dumps(heads_to_dict(heads), sort_keys=True)
        if not self.heads_json:
            raise ValueError(
                f"custom_csv config {self.name!r}: give heads_file (a YAML/JSON head spec) or "
                "heads_json"
            )
        self.bbox_columns = tuple(self.bbox_columns)
        if len(self.bbox_columns) != 4:
            raise ValueError(f"bbox_columns = {self.bbox_columns!r}: expected 4 column names")
        if not 0 <= self.val_percent < 100:
            raise ValueError(f"val_percent = {self.val_percent!r}: expected an integer in [0, 100)")
        heads_from_dict(json.loads(self.heads_json), where=f"config {self.name!r} heads")

    @property
    def heads(self) -> HeadSpec:
        return heads_from_dict(json.loads(self.heads_json), where=f"config {self.name!r} heads")


def config_for_manual_dir(
    path: str | epath.PathLike,
    heads: Sequence[Head] | None = None,
    **options: Any,
) -> tuple[str, CustomCsvConfig]:
    """The manual folder and a config for a user CSV, named after its content.

    Args:
      path: the manual folder (holding ``labels.csv``), or the CSV file itself.
      heads: the heads to read; those without a column in the CSV are left out (they are then
        masked in training). Default: the folder's ``heads.yaml`` / ``heads.yml`` /
        ``heads.json``.
      **options: other :class:`CustomCsvConfig` fields (``skip_bad_rows``, ``val_percent``, ...).

    Returns:
      ``(manual_dir, config)``; the config name is ``csv_<hash of spec, file and options>``.
    """
    p = epath.Path(path)
    if p.suffix.lower() == ".csv":
        manual_dir, options["csv_file"] = p.parent, p.name
    else:
        manual_dir = p
        options.setdefault("csv_file", "labels.csv")
    if heads is None:
        spec = next((manual_dir / f for f in HEADS_FILES if (manual_dir / f).is_file()), None)
        if spec is None:
            raise FileNotFoundError(
                f"custom_csv: no head spec given and none of {list(HEADS_FILES)} in "
                f"{describe_dir(manual_dir)}; pass --heads SPEC.yaml"
            )
        heads = load_heads_file(spec)
    csv_path = manual_dir / options.get("csv_file", "labels.csv")
    if not csv_path.is_file():
        raise MissingFilesError("custom_csv", manual_dir, [options.get("csv_file", "labels.csv")])
    header, _ = read_csv_rows(csv_path, header=True)
    used = [h for h in heads if h.name in header]
    if not used:
        raise AnnotationError(
            csv_path,
            1,
            "header",
            ",".join(header),
            f"a column named after at least one head of {[h.name for h in heads]}",
            reason="no_head_columns",
        )
    heads_json = json.dumps(heads_to_dict(used), sort_keys=True)
    key = json.dumps(
        {"heads": heads_json, **{k: v for k, v in options.items() if k != "skip_bad_rows"}},
        sort_keys=True,
        default=list,
    )
    name = "csv_" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    config = CustomCsvConfig(name=name, heads_json=heads_json, **options)
    if config.skip_bad_rows:
        config.name += SKIP_BAD_ROWS_SUFFIX
    return str(manual_dir), config


@dataclasses.dataclass(frozen=True)
class _Row:
    name: str  # the image path as in the CSV, also the example key
    image: epath.Path
    labels: dict[str, int]
    bbox: tuple[float, float, float, float] | None
    where: str

    @property
    def key(self) -> str:
        return self.name


class Builder(ValidatingBuilder):
    """Images and labels listed in a user CSV, for the heads of a user head spec."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: one ClassLabel per head, bbox, splits."}
    BUILDER_CONFIGS = [
        CustomCsvConfig(
            name="example",
            description="The example shop spec of dummy_data/heads.yaml (sleeve, colour).",
            heads_json=json.dumps(EXAMPLE_HEADS, sort_keys=True),
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put your CSV, head spec and images in one folder:

    manual_dir/
      labels.csv    REQUIRED  header line, then one row per image:
                    image,sleeve,colour,x1,y1,x2,y2,split
                    photos/0001.jpg,long_sleeve,black,10,12,200,310,train
                    photos/0002.jpg,,white,,,,,val        <- empty cell: head unlabelled
      heads.yaml    the head spec (see fashion_keras.heads); each head is a CSV column
      photos/...    the images (paths relative to manual_dir)

    `image` and one column per head are REQUIRED; x1,y1,x2,y2 (pixels) and split
    (train/val/test) are optional. Build with a config naming the spec:
      tfds build datasets/custom_csv --manual_dir DIR \\
        --config '{"name": "shop", "heads_file": "DIR/heads.yaml"}'
    or train directly: python -m fashion_keras.train --dataset custom_csv --data-dir DIR
    --heads DIR/heads.yaml
    """

    def _info(self) -> tfds.core.DatasetInfo:
        heads = self.builder_config.heads
        return self._dataset_info(
            {
                "image": tfds.features.Image(encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "bbox": tfds.features.BBoxFeature(),
                "labels": tfds.features.FeaturesDict(
                    {h.name: tfds.features.ClassLabel(names=h.classes) for h in heads}
                ),
            },
            metadata={"heads": json.loads(self.builder_config.heads_json)},
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config: CustomCsvConfig = self.builder_config
        root = self._manual_root(dl_manager)
        path = root / config.csv_file
        if not path.is_file():
            raise self._missing_files(root, [config.csv_file], heading="")
        header, csv_rows = read_csv_rows(path, header=True)
        columns = _columns(path, header, config)
        report = self._new_report()
        report.add_file(path, len(csv_rows))
        rows: dict[str, list[_Row]] = {s: [] for s in SPLITS}
        seen: dict[str, int] = {}
        for row in csv_rows:
            split = _split_of(row, columns, config)
            try:
                rows[split].append(_parse_row(root, row, header, columns, config, seen))
            except AnnotationError as e:
                config.policy.bad_row(e, report.split(split))
        for split in SPLITS:
            if rows[split]:
                report.split(split)
        return self._split_examples(
            rows,
            [s for s in SPLITS if s in report.splits],
            report,
            hint=f"check that the {config.image_column!r} paths are relative to the manual folder",
        )

    def _heads(self) -> Mapping[str, Sequence[str]]:
        return {h.name: h.classes for h in self.builder_config.heads}

    def _example(
        self, split: str, row: _Row, image: PreparedImage, report: SkipReport
    ) -> dict[str, Any] | None:
        box = FULL_IMAGE
        if row.bbox is not None:
            box = report.admit_box(row.bbox, image.info, row.where)
            if box is None:
                return None
        return {
            "image": image.data,
            "image/filename": row.name,
            "bbox": tfds.features.BBox(*box),
            "labels": row.labels,
        }


def _columns(path: epath.Path, header: Sequence[str], config: CustomCsvConfig) -> dict[str, Any]:
    """Column indices by role; a header that does not fit the spec raises."""
    where = Row(str(path), 1, tuple(header), sep=",")
    text = ",".join(header)
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise where.error("header", text, "unique column names", note=f"{dupes}")
    missing = [c for c in [config.image_column, *(h.name for h in config.heads)] if c not in header]
    bbox = [c for c in config.bbox_columns if c in header]
    problems = [
        (
            missing,
            f"columns {config.image_column!r} and one per head {[h.name for h in config.heads]!r}",
            f"missing {missing}",
        ),
        (
            bbox and len(bbox) != 4,
            f"all or none of the bbox columns {list(config.bbox_columns)}",
            f"only {bbox}",
        ),
    ]
    for found, expected, note in problems:
        if found:
            raise where.error("header", text, expected, note=note, reason="missing_columns")
    return {
        "image": header.index(config.image_column),
        "heads": {h.name: header.index(h.name) for h in config.heads},
        "bbox": [header.index(c) for c in config.bbox_columns] if bbox else None,
        "split": header.index(config.split_column) if config.split_column in header else None,
        "count": len(header),
    }


def _split_of(row: Row, columns: dict[str, Any], config: CustomCsvConfig) -> str:
    """The row's split: its split cell when valid, else by the hash of its image path."""
    fields = row.fields
    if columns["split"] is not None and columns["split"] < len(fields):
        value = fields[columns["split"]]
        if value in SPLITS:
            return value
        if value:  # invalid: counted (or raised) under train
            return "train"
    image = fields[columns["image"]] if columns["image"] < len(fields) else ""
    return "val" if hash_bucket(normalize_image_path(image)) < config.val_percent else "train"


def _parse_row(
    root: epath.Path,
    row: Row,
    header: Sequence[str],
    columns: dict[str, Any],
    config: CustomCsvConfig,
    seen: dict[str, int],
) -> _Row:
    """Validates one CSV row against the header and the head spec."""
    if not row.fields:
        raise row.error("row", "", "a non-empty row", note="blank line", reason="blank_line")
    if len(row.fields) != columns["count"]:
        raise row.error(
            "number of columns",
            len(row.fields),
            f"{columns['count']} comma-separated columns ({','.join(header)})",
            note=f"row: {row.text!r}",
            reason="wrong_column_count",
        )
    rel = row.fields[columns["image"]]
    image = resolve_image_path(root, rel, row, config.image_column)
    same = normalize_image_path(rel)  # ./a.jpg and a//b.jpg are a.jpg and a/b.jpg
    if same in seen:
        raise row.error(
            config.image_column,
            rel,
            "each image once (one row holds all its heads)",
            note=f"also line {seen[same]}",
            reason="duplicate_row",
        )
    if columns["split"] is not None:
        value = row.fields[columns["split"]]
        if value and value not in SPLITS:
            raise row.error(
                config.split_column, value, "train, val, test or empty", reason="unknown_split"
            )
    labels = {}
    for head in config.heads:
        value = row.fields[columns["heads"][head.name]]
        if not value:
            labels[head.name] = UNLABELLED
        elif value in head.classes:
            labels[head.name] = head.classes.index(value)
        else:
            raise row.error(
                head.name,
                value,
                f"one of {list(head.classes)} or empty (unlabelled)",
                reason="unknown_class",
            )
    bbox = None
    if columns["bbox"] is not None:
        cells = [row.fields[i] for i in columns["bbox"]]
        if any(cells):
            names = ",".join(config.bbox_columns)
            if not all(cells):
                raise row.error(
                    names, ",".join(cells), "4 numbers or 4 empty cells", reason="bad_bbox"
                )
            box_row = Row(row.path, row.line, tuple(cells), sep=",")
            bbox = parse_bbox(box_row, field=names)
    seen[same] = row.line  # only valid rows: a bad row does not make a later one a duplicate
    return _Row(rel, image, labels, bbox, row.where)
