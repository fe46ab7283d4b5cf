"""Region boxes attached to a builder's examples: a region file's box, else the box of the
example's own keypoints, else the garment box (found = False, counted as a fallback)."""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import boxed_image, encode

from fashion_keras.data.region_files import read_region_file
from fashion_keras.data.region_lookup import (
    FallbackCounts,
    attach_region_boxes,
    boxes_from_keypoints,
    count_fallbacks,
    dataset_keypoint_heads,
    region_lookup,
)
from fashion_keras.heads import REGIONS, KeypointHead, get_heads, region_boxes

(FASHIONAI,) = get_heads("fashionai_keypoints")
H, W = 60, 100
GARMENT = (0.1, 0.1, 0.9, 0.9)
#: collar points (x, y) of a garment in the 100 x 60 photo
COLLAR_POINTS = {
    "neckline_left": (40, 12),
    "neckline_right": (58, 12),
    "center_front": (49, 22),
    "shoulder_left": (30, 16),
    "shoulder_right": (68, 16),
}


def _points(**named) -> np.ndarray:
    out = np.full((FASHIONAI.num_keypoints, 3), -1.0, np.float32)
    for name, (x, y) in named.items():
        out[FASHIONAI.index(name)] = (x, y, 1)
    return out


def _expected(region: str, points: np.ndarray) -> np.ndarray:
    """The numpy box of ``region``, normalised (ymin, xmin, ymax, xmax)."""
    (box,), (found,) = region_boxes(region, points[None], FASHIONAI, (W, H))
    assert found
    x1, y1, x2, y2 = box
    return np.array([y1 / H, x1 / W, y2 / H, x2 / W])


def _examples(names, points) -> tf.data.Dataset:
    image = encode(boxed_image(H, W, (6, 10, 54, 90)))
    n = len(names)
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": [image] * n,
            "image/filename": list(names),
            "bbox": np.array([GARMENT] * n, np.float32),
            "keypoints": {FASHIONAI.name: np.stack(points)},
        }
    )


def _region_file(tmp_path):
    path = tmp_path / "regions.csv"
    path.write_text(
        "image,region,x1,y1,x2,y2\n"
        "a.jpg,collar,10,6,50,30\n"  # (ymin, xmin, ymax, xmax) .1 .1 .5 .5
        "c.jpg,collar,200,0,220,10\n"  # wholly outside the photo: no box
        "c.jpg,lower,0,30,100,60\n"
    )
    return read_region_file(str(path), ("collar", "lower", "sleeves"))


def test_priority_region_file_then_own_keypoints_then_the_garment_box(tmp_path):
    collar = _points(**COLLAR_POINTS)
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    points = [collar, collar, collar, _points(neckline_left=(40, 12))]  # d: one point
    lookup = region_lookup(_region_file(tmp_path), ("collar", "lower"))
    ds = attach_region_boxes(_examples(names, points), ("collar", "lower"), (FASHIONAI,), lookup)
    a, b, c, d = list(ds.as_numpy_iterator())
    keypoint_box = _expected("collar", collar)
    # a: the file's box wins over its keypoints'
    assert a["region_found"]["collar"]
    np.testing.assert_allclose(a["region_boxes"]["collar"], [0.1, 0.1, 0.5, 0.5], atol=1e-6)
    # b (not in the file), c (its file box lies outside the photo): their keypoints' box
    for ex in (b, c):
        assert ex["region_found"]["collar"]
        np.testing.assert_allclose(ex["region_boxes"]["collar"], keypoint_box, atol=1e-5)
    # d: one collar point, no file box: the garment box, not found
    assert not d["region_found"]["collar"]
    np.testing.assert_allclose(d["region_boxes"]["collar"], GARMENT)
    # lower: only c's file box (no lower keypoints anywhere)
    assert [bool(ex["region_found"]["lower"]) for ex in (a, b, c, d)] == [False, False, True, False]
    np.testing.assert_allclose(c["region_boxes"]["lower"], [0.5, 0.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(a["region_boxes"]["lower"], GARMENT)
    for ex in (a, b, c, d):
        assert ex["region_boxes"]["collar"].dtype == np.float32
        assert ex["image/filename"] and "keypoints" in ex  # the example's features pass through
    assert count_fallbacks(ds) == FallbackCounts(4, {"collar": 1, "lower": 3})


def test_without_a_region_file_keypoints_or_the_garment_box():
    collar = _points(**COLLAR_POINTS)
    sleeves = _points(shoulder_left=(30, 16), shoulder_right=(68, 16), cuff_left_out=(20, 40))
    ds = attach_region_boxes(
        _examples(["x.jpg", "y.jpg"], [collar, sleeves]), ("collar", "sleeves"), (FASHIONAI,)
    )
    x, y = list(ds.as_numpy_iterator())
    np.testing.assert_allclose(x["region_boxes"]["collar"], _expected("collar", collar), atol=1e-5)
    # y's two shoulders give a collar box too (the preset's keypoints include them)
    np.testing.assert_allclose(y["region_boxes"]["collar"], _expected("collar", sleeves), atol=1e-5)
    np.testing.assert_allclose(
        y["region_boxes"]["sleeves"], _expected("sleeves", sleeves), atol=1e-5
    )
    assert x["region_found"]["sleeves"]  # the two shoulders of x's collar bound the sleeves too
    counts = count_fallbacks(ds)
    assert counts == FallbackCounts(2, {"collar": 0, "sleeves": 0})
    # nothing at all: every region falls back to the garment box
    empty = _points()
    ds = attach_region_boxes(_examples(["z.jpg"], [empty]), ("collar",), (FASHIONAI,))
    (z,) = list(ds.as_numpy_iterator())
    assert not z["region_found"]["collar"]
    np.testing.assert_allclose(z["region_boxes"]["collar"], GARMENT)


def test_a_region_no_keypoint_source_covers_falls_back_to_the_garment_box():
    # a dataset whose keypoint head has the collar's points but none of the lower body's
    small = KeypointHead(
        FASHIONAI.name, REGIONS["collar"].keypoints, (), {"g": (REGIONS["collar"].keypoints, None)}
    )
    points = np.array([[*COLLAR_POINTS[k], 1] for k in small.keypoints], np.float32)
    ds = tf.data.Dataset.from_tensors(
        {
            "image": encode(boxed_image(H, W, (6, 10, 54, 90))),
            "bbox": np.array(GARMENT, np.float32),
            "keypoints": {small.name: points},
        }
    )
    (ex,) = list(attach_region_boxes(ds, ("collar", "lower"), (small,)).as_numpy_iterator())
    assert ex["region_found"]["collar"] and not ex["region_found"]["lower"]
    np.testing.assert_allclose(ex["region_boxes"]["lower"], GARMENT)
    np.testing.assert_allclose(
        ex["region_boxes"]["collar"], _expected("collar", _points(**COLLAR_POINTS)), atol=1e-5
    )
    # with no keypoint sources, no keypoints are read at all
    (ex,) = list(attach_region_boxes(ds, ("collar",), ()).as_numpy_iterator())
    assert not ex["region_found"]["collar"]
    np.testing.assert_allclose(ex["region_boxes"]["collar"], GARMENT)


def test_boxes_from_keypoints_keeps_found_boxes_and_uses_the_size_features():
    collar = _points(**COLLAR_POINTS)
    example = {
        "image": tf.constant(encode(boxed_image(H, W, (6, 10, 54, 90)))),
        "keypoints": {FASHIONAI.name: tf.constant(collar)},
        "region_boxes": {
            "collar": tf.constant([0.0, 0.0, 0.5, 0.5]),
            "upper": tf.constant([0.0, 0.0, 0.25, 0.25]),
        },
        "region_found": {"collar": tf.constant(True), "upper": tf.constant(False)},
    }
    out = boxes_from_keypoints(example, ("collar", "upper"), (FASHIONAI,))
    assert out["region_found"]["collar"].numpy()
    np.testing.assert_allclose(out["region_boxes"]["collar"].numpy(), [0, 0, 0.5, 0.5])
    # upper: no box in the example, two shoulders of its own: theirs
    assert out["region_found"]["upper"].numpy()
    np.testing.assert_allclose(
        out["region_boxes"]["upper"].numpy(), _expected("upper", collar), atol=1e-5
    )
    # image/height and image/width give the photo size (here twice the JPEG's)
    sized = {**example, "image/height": tf.constant(2 * H), "image/width": tf.constant(2 * W)}
    del sized["region_boxes"], sized["region_found"]
    out = boxes_from_keypoints(sized, ("collar",), (FASHIONAI,))
    (box,), _ = region_boxes("collar", collar[None], FASHIONAI, (2 * W, 2 * H))
    x1, y1, x2, y2 = box
    np.testing.assert_allclose(
        out["region_boxes"]["collar"].numpy(),
        [y1 / (2 * H), x1 / (2 * W), y2 / (2 * H), x2 / (2 * W)],
        atol=1e-5,
    )
    # no bbox and no box: the whole photo
    out = boxes_from_keypoints(
        {**sized, "keypoints": {FASHIONAI.name: _points()}}, ("collar",), (FASHIONAI,)
    )
    assert not out["region_found"]["collar"].numpy()
    np.testing.assert_allclose(out["region_boxes"]["collar"].numpy(), [0, 0, 1, 1])


def test_dataset_keypoint_heads_reads_the_builder_features():
    def features(**keypoints):
        return tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "labels": tfds.features.FeaturesDict(
                    {"category": tfds.features.ClassLabel(names=["a", "b"])}
                ),
                **(
                    {
                        "keypoints": tfds.features.FeaturesDict(
                            {
                                name: tfds.features.Tensor(shape=shape, dtype=np.float32)
                                for name, shape in keypoints.items()
                            }
                        )
                    }
                    if keypoints
                    else {}
                ),
            }
        )

    # as the fashionai_keypoints builder writes them
    assert dataset_keypoint_heads(features(fashionai_keypoints=(24, 3))) == (FASHIONAI,)
    # a head of another size, a name that is no keypoint preset, none at all
    assert dataset_keypoint_heads(features(fashionai_keypoints=(8, 3))) == ()
    assert dataset_keypoint_heads(features(mystery=(24, 3), deepfashion6=(24, 3))) == ()
    assert dataset_keypoint_heads(features()) == ()
    # a plain dict of features reads the same
    plain = {
        "keypoints": {"fashionai_keypoints": tfds.features.Tensor(shape=(24, 3), dtype=np.float32)}
    }
    assert dataset_keypoint_heads(plain) == (FASHIONAI,)
