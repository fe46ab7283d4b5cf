"""What every builder here shares: its config options, the bad-row policy and a base class.

:class:`ValidatingBuilder` owns the plumbing of a builder that reads a manual download: the
absolute manual folder, the missing-files error, the build report (``info.metadata["report"]``,
:attr:`ValidatingBuilder.report`), the ``<config>_skip_bad_rows`` config variants and the loop
that turns parsed rows into examples (check the image, build the example, count it, log and
store the report at the end of the split). A builder keeps only its own format: its features,
how it reads its files into rows, and one example from one row.
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
    MissingFilesError,
    find_missing,
)
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
        root = epath.Path(dl_manager.manual_dir)
        if not root.is_absolute():
            root = root.absolute()
        return root

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

    def _split_examples(
        self,
        rows: Mapping[str, Sequence[ImageRow]],
        splits: Iterable[str],
        build_report: BuildReport,
        hint: str,
    ) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
        """The example generators of ``splits`` (what ``_split_generators`` returns).

        Images of a row duplicated in an earlier split are skipped; ``hint`` says what to check
        when every row of a split is skipped.
        """
        duplicates = find_duplicates(rows, self.SPLIT_ORDER)
        return {
            split: self._generate_examples(split, rows[split], duplicates, build_report, hint)
            for split in splits
        }

    def _generate_examples(
        self,
        split: str,
        rows: Sequence[ImageRow],
        duplicates: Mapping[tuple[str, str], str],
        build_report: BuildReport,
        hint: str,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Admits each row's image, builds its example and counts it; logs and stores the report
        at the end of the split, and raises when every row was skipped."""
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
        report.raise_if_nothing_kept(hint=hint)
