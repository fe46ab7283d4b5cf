"""What the dataset builders share, by noun; the same policy for every builder.

- ``errors``: :class:`AnnotationError`, :class:`MissingFilesError`, :class:`EmptySplitError`
  (the :class:`InputError` s, printed as their message alone under ``tfds build``),
  :class:`ImageProblem` and the skip reasons. A *structural* problem in an annotation row (wrong column count, unknown task or
  class, a malformed label string, a value that is not an integer, an inverted bbox, an image
  path that leaves the dataset folder) raises ``AnnotationError``, whose message names the file,
  the 1-based line, the field, the offending value and what was expected. With
  ``skip_bad_rows`` the row is skipped instead and counted as ``bad_row:<reason>``.
- ``rows``: reading annotation files into rows with line numbers; parsing integers, one-hot
  groups, label strings, boxes and image paths (normalised before duplicates are looked for).
- ``images``: an unusable *image* is not an error: the row is skipped and counted (missing,
  empty, undecodable, over the pixel cap, under the minimum side). Images TensorFlow's JPEG
  decoder cannot read are converted to RGB JPEG and counted as adjusted. Byte-identical images
  (md5) in two splits stay in the first split (train before val before test).
- ``report``: the per-split skip report and the build report, stored in the dataset's
  ``info.metadata["report"]`` with ``rows_in == rows_written + rows_reported``; a split that
  keeps no row is reported and not written (an empty training split is an error).
- ``freshness``: the fingerprint of the manual folder stored with the prepared data, and what
  changed since; a changed folder is prepared again.
- ``builder``: the shared config options, the bad-row policy and the builder base class.
"""
