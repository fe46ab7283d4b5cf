"""What every builder here shares: its config options, the bad-row policy and a base class.

:class:`ValidatingBuilder` owns the plumbing of a builder that reads a manual download: the
absolute manual folder, the missing-files error, the build report (``info.metadata["report"]``,
:attr:`ValidatingBuilder.report`), the ``<config>_skip_bad_rows`` config variants and the loop
that turns parsed rows into examples (check the image, build the example, count it, log and
store the report at the end of the split), the splits left empty, and the freshness of the
prepared data: it stores a fingerprint of the manual folder when it prepares a dataset and
prepares it again when the folder changed (:mod:`~fashion_keras_datasets.common.freshness`). A
builder keeps only its own format: its features, how it reads its files into rows, and one
example from one row.
"""

from __future__ import annotations

import abc
import dataclasses
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import tensorflow_datasets.public_api as tfds
from absl import logging
from etils import epath

from fashion_keras_datasets.common.errors import (
    BAD_ROW_PREFIX,
    AnnotationError,
    EmptySplitError,
    MissingFilesError,
    find_missing,
)
from fashion_keras_datasets.common.freshness import FORMAT, SOURCE_KEY, compare, fingerprint
from fashion_keras_datasets.common.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MIN_IMAGE_SIDE,
    ImageLimits,
    ImageRow,
    PreparedImage,
    find_duplicates,
)
from fashion_keras_datasets.common.report import BuildReport, SkipReport


class RowPolicy:
    """What to do with a malformed annotation row: raise (default) or skip and count it."""

    def __init__(self, skip_bad_rows: bool = False) -> None:
        self.skip_bad_rows = skip_bad_rows

    def bad_row(self, error: AnnotationError, report: SkipReport) -> None:
        """Raises ``error``, or (``skip_bad_rows``) counts the row as ``bad_row:<reason>``."""
        if not self.skip_bad_rows:
            raise error
        report.skip(BAD_ROW_PREFIX + error.reason, error.where, error.detail)

    def file_problem(self, error: AnnotationError, report: BuildReport) -> None:
        """A file-level problem (not one row): raises, or notes it in the build report."""
        if not self.skip_bad_rows:
            raise error
        logging.warning("skip_bad_rows: tolerating %s", error)
        report.note(str(error))


@dataclasses.dataclass(eq=False)
class ValidatingConfig(tfds.core.BuilderConfig):
    """Builder options shared by every builder here (fields of its ``BuilderConfig``).

    Attributes:
      skip_bad_rows: skip and report malformed annotation rows instead of stopping the build.
        A config named ``<config>_skip_bad_rows`` is ``<config>`` with this set (see
        :class:`ValidatingBuilder`): ``tfds build ... --config m_half_skip_bad_rows``.
      max_image_pixels, min_image_side: see :class:`ImageLimits`.
    """

    skip_bad_rows: bool = False
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    min_image_side: int = DEFAULT_MIN_IMAGE_SIDE

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_pixels, self.min_image_side)

    @property
    def policy(self) -> RowPolicy:
        return RowPolicy(self.skip_bad_rows)


SKIP_BAD_ROWS_SUFFIX = "_skip_bad_rows"


def skip_bad_rows_variant(config: ValidatingConfig) -> ValidatingConfig:
    """``config`` with ``skip_bad_rows`` set, named ``<name>_skip_bad_rows``."""
    if config.skip_bad_rows:
        return config
    return dataclasses.replace(config, name=config.name + SKIP_BAD_ROWS_SUFFIX, skip_bad_rows=True)


def find_release_folders(root: epath.Path, files: Sequence[str]) -> list[str]:
    """Release folders under ``root`` holding any of ``files`` (``"."`` when ``root`` itself is
    one), sorted: a manual folder may hold several releases of one dataset side by side.

    A subfolder that only holds files ``root`` itself lists as its own (``Tests/test.csv`` of a
    release at the root, matched as ``test.csv`` in ``Tests/``) is part of that release."""
    found = []
    candidates = [root] + sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
    for folder in candidates:
        matched = [f for f in files if (folder / f).is_file()]
        if folder != root:  # Tests/test.csv of the root release is not a release "Tests"
            matched = [f for f in matched if f"{folder.name}/{f}" not in files]
        if matched:
            found.append("." if folder == root else folder.name)
    return found


class ValidatingBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base class of the builders here: a manual download read into ``train``, ``val``, ``test``.

    A subclass implements ``_info`` (with :meth:`_dataset_info`), ``_split_generators`` (read its
    files into :class:`~fashion_keras_datasets.common.images.ImageRow` rows per split, then
    return :meth:`_split_examples`), :meth:`_heads` and :meth:`_example`. Its predefined configs
    are :class:`ValidatingConfig` objects; ``<config>_skip_bad_rows`` names the lenient variant
    of each, so the stock CLI reaches it: ``tfds build <folder> --config <config>_skip_bad_rows``.
    """

    #: The splits in the order of :func:`~fashion_keras_datasets.common.images.find_duplicates`:
    #: an image in two splits stays in the first.
    SPLIT_ORDER: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    _variants: ClassVar[dict[tuple[type, str], ValidatingConfig]] = {}

    @classmethod
    def get_builder_config(cls, name: str, version: Any = None) -> Any:
        config = super().get_builder_config(name, version)
        if config is None and name.endswith(SKIP_BAD_ROWS_SUFFIX):
            base = super().get_builder_config(name[: -len(SKIP_BAD_ROWS_SUFFIX)], version)
            if isinstance(base, ValidatingConfig) and not base.skip_bad_rows:
                key = (cls, name)
                if key not in ValidatingBuilder._variants:
                    ValidatingBuilder._variants[key] = skip_bad_rows_variant(base)
                config = ValidatingBuilder._variants[key]
        return config

    def _log_download_bytes(self) -> None:
        # TFDS prints "Downloading and preparing dataset Unknown size ..." to stdout; these
        # builders download nothing (they read a manual folder), so say what happens, as a log.
        logging.info(
            "Preparing %s from its manual folder into %s", self.info.full_name, self.data_dir
        )

    def _log_download_done(self) -> None:
        logging.info("Prepared %s into %s", self.info.full_name, self.data_dir)

    @property
    def report(self) -> dict[str, Any]:
        """The :class:`~fashion_keras_datasets.common.report.BuildReport` of the build as a dict
        (``info.metadata["report"]``)."""
        return dict(self.info.metadata.get("report", {}))

    @abc.abstractmethod
    def _heads(self) -> Mapping[str, Sequence[str]]:
        """The class names of each head of the ``labels`` feature (listed in the report)."""

    @abc.abstractmethod
    def _example(
        self, split: str, row: Any, image: PreparedImage, report: SkipReport
    ) -> dict[str, Any] | None:
        """The example of one row whose image was admitted, or None when ``report`` skipped it.

        The ``labels`` feature holds a class index per head (-1: unlabelled), which the loop
        counts in the report.
        """

    def _dataset_info(
        self,
        features: Mapping[str, Any],
        *,
        homepage: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tfds.core.DatasetInfo:
        """The DatasetInfo of ``features``, with the ``info.metadata`` the report is stored in."""
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None,
            homepage=homepage,
            metadata=tfds.core.MetadataDict(metadata or {}),
        )

    def _manual_root(self, dl_manager: tfds.download.DownloadManager) -> epath.Path:
        """The manual folder, absolute, so ``file:line`` in messages is unambiguous."""
        return _absolute(dl_manager.manual_dir)

    def download_and_prepare(
        self,
        *,
        download_dir: epath.PathLike | None = None,
        download_config: tfds.download.DownloadConfig | None = None,
        **kwargs: Any,
    ) -> None:
        """TFDS's ``download_and_prepare``; prepared data whose manual folder changed since it
        was prepared is prepared again (one log line says what changed)."""
        config = download_config or tfds.download.DownloadConfig()
        reuse = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
        if config.download_mode == reuse and self.data_path.exists():
            stale = self._stale_source(download_dir, config)
            if stale:
                logging.warning("%s: %s; preparing it again", self.info.full_name, stale)
                config = dataclasses.replace(
                    config, download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
                )
        super().download_and_prepare(download_dir=download_dir, download_config=config, **kwargs)

    def _download_and_prepare(
        self,
        dl_manager: tfds.download.DownloadManager,
        download_config: tfds.download.DownloadConfig | None = None,
    ) -> None:
        # taken before any file is read: a change made during the build shows next time
        root = self._manual_root(dl_manager)
        self.info.metadata[SOURCE_KEY] = fingerprint(root, exclude=[self.data_dir_root])
        super()._download_and_prepare(dl_manager, download_config)

    def _stale_source(
        self, download_dir: epath.PathLike | None, config: tfds.download.DownloadConfig
    ) -> str | None:
        """Why the prepared data no longer matches the manual folder, or None. Without a manual
        folder (prepared data used on its own) there is nothing to compare: None."""
        downloads = epath.Path(download_dir or self.data_dir_root / "downloads")
        root = _absolute(config.manual_dir or downloads / "manual")
        if not root.is_dir():
            logging.info("%s: no manual folder %s to compare with; reusing", self.name, root)
            return None
        stored = tfds.core.MetadataDict()
        try:
            stored.load_metadata(self.data_path)
        except (OSError, ValueError):
            stored.clear()
        if stored.get(SOURCE_KEY, {}).get("format") != FORMAT:
            return (
                f"the prepared data in {self.data_path} holds no fingerprint of the manual "
                f"folder {root} (prepared by an older version), so it may be stale"
            )
        changes = compare(stored[SOURCE_KEY], fingerprint(root, exclude=[self.data_dir_root]))
        if not changes:
            return None
        return f"manual folder {root} changed since it was prepared ({changes.describe()})"

    def _missing_files(
        self, root: epath.Path, missing: Sequence[str], heading: str = "Expected layout:\n"
    ) -> MissingFilesError:
        """The error listing ``missing`` paths, followed by the manual download instructions."""
        return MissingFilesError(
            self.name,
            root,
            missing,
            hint=heading + textwrap.dedent(self.MANUAL_DOWNLOAD_INSTRUCTIONS),
        )

    def _require(self, root: epath.Path, files: Iterable[str], dirs: Iterable[str] = ()) -> None:
        """Raises :meth:`_missing_files` unless ``files`` and ``dirs`` exist under ``root``."""
        missing = find_missing(root, files, dirs=dirs)
        if missing:
            raise self._missing_files(root, missing)

    def _new_report(self) -> BuildReport:
        """An empty report of this build."""
        return BuildReport(self.name, self.builder_config.name)

    def _read_split_examples(
        self,
        rows: Mapping[str, Sequence[ImageRow]],
        build_report: BuildReport,
        hint: str,
    ) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
        """:meth:`_split_examples` over every split of :attr:`SPLIT_ORDER` that has rows or
        reported bad rows (a split with bad rows only still gets its report)."""
        for split in self.SPLIT_ORDER:
            if rows.get(split) or split in build_report.splits:
                build_report.split(split)
        splits = [s for s in self.SPLIT_ORDER if s in build_report.splits]
        return self._split_examples(rows, splits, build_report, hint=hint)

    def _split_examples(
        self,
        rows: Mapping[str, Sequence[ImageRow]],
        splits: Iterable[str],
        build_report: BuildReport,
        hint: str,
    ) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
        """The example generators of ``splits`` (what ``_split_generators`` returns).

        Images of a row duplicated in an earlier split are skipped. A split that would keep no
        row is counted, reported as empty and not written (TFDS cannot write an empty split),
        except the training split (the first of :attr:`SPLIT_ORDER`): without a usable row it
        raises :class:`EmptySplitError` naming its files, with ``hint`` saying what to check.
        """
        duplicates = find_duplicates(rows, self.SPLIT_ORDER)
        train = self.SPLIT_ORDER[0]
        generators = {}
        for split in dict.fromkeys([train, *splits]):
            split_rows = rows.get(split, ())
            all_skipped = self._all_skipped(split, split_rows, duplicates)
            if all_skipped is None:
                generators[split] = self._generate_examples(
                    split, split_rows, duplicates, build_report
                )
                continue
            report = build_report.split(split)
            report.merge(all_skipped)  # each row is counted once, here
            report.declare_heads(self._heads())
            if split == train:
                build_report.finish_split(split, self.info.metadata)  # logs what was skipped
                files = list(report.files) or list(build_report.files)
                raise EmptySplitError(files, split, report.num_rows, report.skipped, hint)
            build_report.empty_split(split)
            build_report.finish_split(split, self.info.metadata)
        return generators

    def _all_skipped(
        self, split: str, rows: Sequence[ImageRow], duplicates: Mapping[tuple[str, str], str]
    ) -> SkipReport | None:
        """None when some row of ``split`` will be kept (rows are checked until one is, normally
        the first); else a :class:`SkipReport` counting every row as the build loop would."""
        limits = self.builder_config.image_limits
        scratch = SkipReport(self.name, split)
        for row in rows:
            duplicate_of = duplicates.get((split, row.key))
            image = scratch.admit_image(row.where, row.name, row.image, limits, duplicate_of)
            if image is not None and self._example(split, row, image, scratch) is not None:
                return None
        return scratch

    def _generate_examples(
        self,
        split: str,
        rows: Sequence[ImageRow],
        duplicates: Mapping[tuple[str, str], str],
        build_report: BuildReport,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Admits each row's image, builds its example and counts it; logs and stores the report
        at the end of the split."""
        config: ValidatingConfig = self.builder_config
        limits = config.image_limits
        heads = self._heads()
        report = build_report.split(split)
        report.declare_heads(heads)
        for row in rows:
            image = report.admit_image(
                row.where, row.name, row.image, limits, duplicates.get((split, row.key))
            )
            if image is None:
                continue
            example = self._example(split, row, image, report)
            if example is None:
                continue
            report.keep({h: heads[h][i] if i >= 0 else None for h, i in example["labels"].items()})
            yield row.key, example
        build_report.finish_split(split, self.info.metadata)


def _absolute(path: epath.PathLike) -> epath.Path:
    path = epath.Path(path)
    return path if path.is_absolute() else path.absolute()
