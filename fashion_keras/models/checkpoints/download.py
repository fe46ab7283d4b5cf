"""Fetching checkpoints by name into the Keras cache folder, verified, once.

``--weights`` names a remote checkpoint as ``imagenet`` (the backbone's ``presets.PRETRAINED``
entry), a timm Hugging Face id (``timm/seresnet50.a1_in1k``, ``hf://timm/...``) or an
``https://`` URL. :func:`remote_checkpoint` turns the name into a :class:`RemoteCheckpoint`
(URL, cache file name, what to check) and :func:`fetch` downloads it with
``keras.utils.get_file`` (progress bar; already a dependency, the folder Keras keeps its own
application weights in, so no ``huggingface_hub`` in the training install).

Checks: the size (``X-Linked-Size`` or ``Content-Length``), the SHA-256 where the source
publishes it (Hugging Face's ``X-Linked-Etag`` of LFS files, or ``PretrainedInfo.sha256``) and
the hash prefix in a release file name (``se_resnet50-ce0d4300.pth``: the first hex digits of
the SHA-256, the torch hub / timm convention). A file is downloaded under a temporary name and
renamed only once it passes, with ``<file>.download.json`` (URL, size, SHA-256) beside it, so
a later run re-checks it with no network request at all. A timm id also brings the repo's
``config.json`` (timm's ``pretrained_cfg``), saved as the checkpoint's sidecar ``<file>.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import keras

from fashion_keras.models.checkpoints.files import CheckpointError
from fashion_keras.models.checkpoints.pretrained_config import sidecar_path
from fashion_keras.models.presets import BACKBONE_PRESETS, PRETRAINED

log = logging.getLogger("fashion_keras")

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
#: ``name-<hex>.ext``: the first hex digits of the file's SHA-256 (torch hub / timm releases).
_HASH_PREFIX = re.compile(r"-([0-9a-f]{8,64})(?:\.[A-Za-z0-9]+)+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HF_ID = re.compile(r"^(?:hf://)?(?P<owner>[A-Za-z0-9][\w.-]*)/(?P<name>[\w.-]+)$")
_HF_RESOLVE = re.compile(r"^/(?P<owner>[^/]+)/(?P<name>[^/]+)/resolve/[^/]+/(?P<file>[^/]+)$")
_RECORD_SUFFIX = ".download.json"
_PROBE_TIMEOUT_S = 30


@dataclasses.dataclass(frozen=True)
class RemoteCheckpoint:
    """A checkpoint to fetch: where from, its name in the cache, what is known to check."""

    url: str
    file_name: str  # in the Keras cache folder
    spec: str  # the --weights value, for messages
    sha256: str | None = None  # known in advance (the table)
    config_url: str | None = None  # a timm config.json saved as the sidecar <file>.json
    architecture: str | None = None  # timm architecture the name implies (checked)

    @property
    def hash_prefix(self) -> str | None:
        """The SHA-256 prefix the file name carries (``-ce0d4300.pth``), if any."""
        return hash_prefix(self.file_name)


def hash_prefix(file_name: str) -> str | None:
    """``ce0d4300`` for ``se_resnet50-ce0d4300.pth``; ``None`` when the name carries none (a
    run of digits only, e.g. a date, is not taken for one)."""
    m = _HASH_PREFIX.search(file_name)
    if m and re.search("[a-f]", m.group(1)):
        return m.group(1)
    return None


def hf_endpoint() -> str:
    """The Hugging Face endpoint: ``$HF_ENDPOINT`` (as ``huggingface_hub`` reads it) or
    https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")


def hf_url(repo_id: str, file_name: str, revision: str = "main") -> str:
    """The download URL of ``file_name`` in the Hugging Face repo ``repo_id``."""
    return f"{hf_endpoint()}/{repo_id}/resolve/{revision}/{file_name}"


def known_sources() -> list[str]:
    """The ``--weights`` ids of the table, for error messages (``timm/...`` or a URL)."""
    return [info.source for info in PRETRAINED.values() if info.source]


def _hf_checkpoint(
    spec: str, owner: str, name: str, file: str = "model.safetensors"
) -> RemoteCheckpoint:
    timm = owner == "timm"
    stem = name if timm else f"{owner}--{name}"
    suffix = os.path.splitext(file)[1] or ".safetensors"
    return RemoteCheckpoint(
        url=hf_url(f"{owner}/{name}", file),
        file_name=stem + suffix,
        spec=spec,
        config_url=hf_url(f"{owner}/{name}", "config.json"),
        architecture=name.split(".", 1)[0] if timm else None,
    )


def remote_checkpoint(weights: str, backbone: str) -> RemoteCheckpoint | None:
    """What ``--weights`` names remotely, or ``None`` for a local path.

    ``imagenet`` (the backbone's :data:`~fashion_keras.models.presets.PRETRAINED` entry), a
    Hugging Face id (``timm/<arch>.<tag>``, ``hf://<owner>/<repo>``) or an ``http(s)://`` URL.
    An existing local file always wins. Raises :class:`CheckpointError` for ``imagenet`` on a
    backbone without ImageNet weights and for a timm id of another architecture.
    """
    if weights == "imagenet":
        info = PRETRAINED.get(backbone)
        if info is None or info.source is None:
            alternatives = [n for n, i in PRETRAINED.items() if i.source and n.endswith(backbone)]
            hint = f"; use --backbone {alternatives[0]} instead" if alternatives else ""
            raise CheckpointError(
                f"--weights imagenet: timm publishes no ImageNet weights for backbone "
                f"{backbone!r}{hint}; or pass --weights PATH / a timm id / a URL"
            )
        url = hf_url(info.hf_hub_id, "model.safetensors") if info.hf_hub_id else info.url
        return RemoteCheckpoint(url, info.primary_file(backbone), weights, sha256=info.sha256)
    if os.path.isfile(os.path.expanduser(weights)):
        return None
    scheme = urllib.parse.urlsplit(weights).scheme
    if scheme in ("http", "https"):
        path = urllib.parse.urlsplit(weights).path
        m = _HF_RESOLVE.match(path)
        if m and m.group("file").endswith(".safetensors"):  # a hub URL: the id's cache name
            remote = _hf_checkpoint(weights, m.group("owner"), m.group("name"), m.group("file"))
            return dataclasses.replace(remote, url=weights, config_url=None)
        name = os.path.basename(path)
        if not name:
            raise CheckpointError(
                f"--weights {weights!r}: the URL names no file; expected a URL ending in the "
                "checkpoint's file name (e.g. .../model.safetensors)"
            )
        return RemoteCheckpoint(weights, name, weights)
    m = _HF_ID.match(weights)
    if m and (weights.startswith("hf://") or m.group("owner") == "timm"):
        remote = _hf_checkpoint(weights, m.group("owner"), m.group("name"))
        if remote.architecture:
            check_architecture(remote.architecture, backbone, weights)
        return remote
    return None


def check_architecture(arch: str, backbone: str, spec: str) -> None:
    """Raises unless a checkpoint of timm architecture ``arch`` fits ``backbone``."""
    if arch == backbone or (
        arch in BACKBONE_PRESETS and BACKBONE_PRESETS[arch] == BACKBONE_PRESETS.get(backbone)
    ):
        return
    fits = [s for s in known_sources() if f"/{backbone}." in s or s.endswith(f"/{backbone}")]
    hint = f" or a {backbone} checkpoint (timm's default: {fits[0]})" if fits else ""
    if arch in BACKBONE_PRESETS:
        use = f"use --backbone {arch} for it{hint}"
    else:
        use = f"{arch!r} is not a backbone preset; use a {backbone} checkpoint{hint}"
    raise CheckpointError(
        f"--weights {spec!r} is a checkpoint of architecture {arch!r}, not of the backbone "
        f"{backbone!r}: {use}"
    )


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


def file_sha256(path: str) -> str:
    """The SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_path(path: str) -> str:
    """``<file>.download.json``: the URL, size and SHA-256 a download was verified with."""
    return path + _RECORD_SUFFIX


def verify_cached(path: str) -> None:
    """Re-checks a file in the cache with no network request: against its download record
    (size, SHA-256) or, for one copied by hand, the hash prefix its name carries.

    Raises :class:`CheckpointError` saying what differs and to delete the file.
    """
    expected_size, expected_sha, source = None, None, None
    record = record_path(path)
    if os.path.isfile(record):
        try:
            with open(record, encoding="utf-8") as f:
                data = json.load(f)
            expected_size, expected_sha = int(data["size"]), str(data["sha256"])
            source = f"its download record {record}"
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"{record}: unreadable download record ({e}); delete it and {path} and run "
                "again to download the file afresh"
            ) from e
    prefix = hash_prefix(os.path.basename(path))
    if expected_size is None and prefix is None:
        return  # copied by hand, nothing published to check against
    problems = []
    size = os.path.getsize(path)
    if expected_size is not None and size != expected_size:
        problems.append(f"{size} bytes, expected {expected_size} ({source})")
    else:
        digest = file_sha256(path)
        if expected_sha and digest != expected_sha:
            problems.append(f"SHA-256 {digest}, expected {expected_sha} ({source})")
        if prefix and not digest.startswith(prefix):
            problems.append(f"SHA-256 {digest} does not start with {prefix} (the file name's)")
    if problems:
        raise CheckpointError(
            f"{path}: the cached checkpoint is corrupt or incomplete: {'; '.join(problems)}. "
            f"Delete it (and {record}) and run again to download it afresh."
        )


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Published:
    """What the server says about a file before it is downloaded."""

    size: int | None = None
    sha256: str | None = None


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects (keeping HEAD a HEAD) and keeps every hop's headers: Hugging Face puts
    ``X-Linked-Etag`` / ``X-Linked-Size`` on the redirect to its CDN, not on the file."""

    def __init__(self) -> None:
        self.hops: list[Any] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        self.hops.append(headers)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and req.get_method() == "HEAD":
            new.method = "HEAD"
        return new


def _published(headers_list: list[Any]) -> _Published:
    out = _Published()
    for headers in headers_list:
        etag = (headers.get("X-Linked-Etag") or "").strip().removeprefix("W/").strip('"').lower()
        if _SHA256.match(etag):
            out.sha256 = etag
        linked = headers.get("X-Linked-Size")
        if linked and linked.isdigit():
            out.size = int(linked)
    if out.size is None and headers_list:
        length = headers_list[-1].get("Content-Length")
        if length and length.isdigit():
            out.size = int(length)
    return out


def _not_found(url: str, spec: str, code: int) -> CheckpointError:
    hint = (
        " (Hugging Face answers 401 for a repo that does not exist, or is private or gated)"
        if code == 401
        else ""
    )
    return CheckpointError(
        f"--weights {spec!r}: there is no checkpoint at {url} (HTTP {code}){hint}. Check the "
        f"name; the known checkpoints are: {', '.join(known_sources())}"
    )


def _offline(url: str, target: str, spec: str, reason: object) -> CheckpointError:
    return CheckpointError(
        f"--weights {spec!r}: cannot download {url} ({reason}). Without network access, "
        f"download it elsewhere and put it at {target} (the Keras cache folder, "
        "$KERAS_HOME/models), or pass --weights with the path of a local copy."
    )


def _probe(url: str, target: str, spec: str) -> _Published:
    """HEAD ``url``: the published size / SHA-256; raises on 4xx at ``url`` or no network."""
    redirects = _RecordingRedirects()
    opener = urllib.request.build_opener(redirects)
    request = urllib.request.Request(url, method="HEAD")
    try:
        with opener.open(request, timeout=_PROBE_TIMEOUT_S) as response:
            return _published([*redirects.hops, response.headers])
    except urllib.error.HTTPError as e:
        if not redirects.hops and e.code in (401, 403, 404, 410):
            raise _not_found(url, spec, e.code) from e
        if not redirects.hops and e.code >= 500:
            raise _offline(url, target, spec, f"HTTP {e.code} {e.reason}") from e
        # a CDN that refuses HEAD after the redirect: keep what the first hops said
        log.info("HEAD %s: HTTP %s after %d redirect(s)", url, e.code, len(redirects.hops))
        return _published(redirects.hops)
    except (urllib.error.URLError, OSError) as e:
        raise _offline(url, target, spec, getattr(e, "reason", e)) from e


def _download(url: str, target: str, spec: str) -> str:
    """``keras.utils.get_file`` into ``<target>.<pid>.part``; returns that path."""
    folder, name = os.path.split(target)
    part = f"{name}.{os.getpid()}.part"
    try:
        return keras.utils.get_file(
            part, url, cache_dir=folder, cache_subdir="", force_download=True
        )
    except Exception as e:  # get_file re-raises urllib's errors as a bare Exception
        cause = e.__context__ if isinstance(e.__context__, urllib.error.URLError) else e
        if isinstance(cause, urllib.error.ContentTooShortError):
            raise CheckpointError(
                f"--weights {spec!r}: the download of {url} stopped early ({cause.reason}); "
                f"nothing was kept at {target}. Run again to retry; if it keeps failing check "
                f"the network or proxy, or download the file yourself and put it at {target}."
            ) from e
        if isinstance(cause, urllib.error.HTTPError):
            if cause.code in (401, 403, 404, 410):
                raise _not_found(url, spec, cause.code) from e
            raise _offline(url, target, spec, f"HTTP {cause.code} {cause.reason}") from e
        if isinstance(cause, urllib.error.URLError):
            raise _offline(url, target, spec, cause.reason) from e
        raise


def _verify_download(part: str, url: str, target: str, spec: str, expected: _Published) -> str:
    """Checks a fresh download (the caller deletes it on a mismatch); returns its SHA-256."""
    problems = []
    size = os.path.getsize(part)
    if expected.size is not None and size != expected.size:
        problems.append(f"got {size} bytes, the server published {expected.size}")
    digest = file_sha256(part)
    if expected.sha256 and digest != expected.sha256:
        problems.append(f"SHA-256 {digest}, expected {expected.sha256}")
    prefix = hash_prefix(os.path.basename(target))
    if prefix and not digest.startswith(prefix):
        problems.append(
            f"SHA-256 {digest} does not start with {prefix} (the hash prefix of the file name)"
        )
    if problems:
        raise CheckpointError(
            f"--weights {spec!r}: the file downloaded from {url} is corrupt or incomplete "
            f"({'; '.join(problems)}); it was deleted and nothing was kept at {target}. Run "
            "again to retry; if it keeps failing check the network or proxy, or download the "
            f"file yourself, check it and put it at {target}."
        )
    return digest


def _fetch_config(remote: RemoteCheckpoint, target: str, backbone: str) -> None:
    """Downloads the timm ``config.json`` as the sidecar ``<file>.json`` (architecture checked
    before the weights are fetched)."""
    sidecar = sidecar_path(target)
    part = _download(remote.config_url, sidecar, remote.spec)
    try:
        with open(part, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"--weights {remote.spec!r}: {remote.config_url} is not a timm config.json ({e})"
        ) from e
    finally:
        os.remove(part)
    arch = data.get("architecture")
    if isinstance(arch, str) and arch:
        check_architecture(arch, backbone, remote.spec)
    data["source"] = remote.config_url
    with open(sidecar, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def fetch(remote: RemoteCheckpoint, cache_dir: str, backbone: str) -> str:
    """The path of ``remote`` in ``cache_dir``: re-checked with no network request when it is
    there, else downloaded, verified and recorded. Raises :class:`CheckpointError` naming the
    URL and the path (unreachable, not found, corrupt or truncated)."""
    target = os.path.join(cache_dir, remote.file_name)
    if os.path.isfile(target):
        verify_cached(target)
        return target
    try:
        os.makedirs(cache_dir, exist_ok=True)
        writable = os.access(cache_dir, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        raise CheckpointError(
            f"--weights {remote.spec!r}: the Keras cache folder {cache_dir} is not writable; "
            f"set KERAS_HOME to a writable folder, or download {remote.url} yourself and pass "
            "--weights with its path"
        )
    published = _probe(remote.url, target, remote.spec)
    if remote.sha256:
        published.sha256 = remote.sha256
    if remote.config_url and not os.path.isfile(sidecar_path(target)):
        _fetch_config(remote, target, backbone)
    part = _download(remote.url, target, remote.spec)
    try:
        digest = _verify_download(part, remote.url, target, remote.spec, published)
        size = os.path.getsize(part)
        os.replace(part, target)
        with open(record_path(target), "w", encoding="utf-8") as f:
            json.dump({"url": remote.url, "size": size, "sha256": digest}, f, indent=2)
            f.write("\n")
    finally:
        if os.path.exists(part):
            os.remove(part)
    log.info("downloaded %s to %s (SHA-256 %s)", remote.url, target, digest)
    return target
