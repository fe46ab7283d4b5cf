"""The head presets: class lists and keypoints as in the dataset releases."""

from __future__ import annotations

from fashion_keras.heads.keypoints import HeadSpec, KeypointHead
from fashion_keras.heads.names import FASHIONAI_KEYPOINT_NAMES
from fashion_keras.heads.softmax import Head

# --- DeepFashion fine-grained attributes ("DeepFashion-6", Anno_fine/) -------------------------
# Attribute types 1..6 in the file order of <split>_attr.txt (26 columns). Default loss weights
# are the per-head focal-loss weights of the DeepFashion-6 challenge report (82.65% mean acc).
# The neckline, a small design detail, looks at the collar region (regions.REGIONS) when training
# with region crops; the other heads see the garment box.
DEEPFASHION6: HeadSpec = (
    Head(
        "texture",
        ("floral", "graphic", "striped", "embroidered", "pleated", "solid", "lattice"),
        0.95,
    ),
    Head("sleeve", ("long_sleeve", "short_sleeve", "sleeveless"), 0.85),
    Head("length", ("maxi_length", "mini_length", "no_dress"), 0.85),
    Head(
        "neckline",
        ("crew_neckline", "v_neckline", "square_neckline", "no_neckline"),
        0.9,
        region="collar",
    ),
    Head("fabric", ("denim", "chiffon", "cotton", "leather", "faux", "knit"), 1.0),
    Head("fit", ("tight", "loose", "conventional"), 0.9),
)

# --- FashionAI 2018 attribute tasks -----------------------------------------------------------
# Head names are the task names used in label.csv / question.csv. Regions (regions.REGIONS): the
# four design tasks look at the collar; pant and skirt length at the lower body; sleeve length at
# the sleeves. Coat length takes the whole garment, not the upper body: it is judged by where the
# hem falls on the body (waist to floor), so the crop keeps all the coat's points (cuffs, hem)
# and the margin, where the torso box would cut off the long lengths' context.
FASHIONAI8: HeadSpec = (
    Head(
        "coat_length_labels",
        (
            "Invisible",
            "High Waist Length",
            "Regular Length",
            "Long Length",
            "Micro Length",
            "Knee Length",
            "Midi Length",
            "Ankle&Floor Length",
        ),
        region="garment",
    ),
    Head(
        "collar_design_labels",
        ("Invisible", "Shirt Collar", "Peter Pan", "Puritan Collar", "Rib Collar"),
        region="collar",
    ),
    Head(
        "lapel_design_labels",
        ("Invisible", "Notched", "Collarless", "Shawl Collar", "Plus Size Shawl"),
        region="collar",
    ),
    Head(
        "neck_design_labels",
        (
            "Invisible",
            "Turtle Neck",
            "Ruffle Semi-High Collar",
            "Low Turtle Neck",
            "Draped Collar",
        ),
        region="collar",
    ),
    Head(
        "neckline_design_labels",
        (
            "Invisible",
            "Strapless Neck",
            "Deep V Neckline",
            "Straight Neck",
            "V Neckline",
            "Square Neckline",
            "Off Shoulder",
            "Round Neckline",
            "Sweat Heart Neck",
            "One Shoulder Neckline",
        ),
        region="collar",
    ),
    Head(
        "pant_length_labels",
        (
            "Invisible",
            "Short Pant",
            "Mid Length",
            "3/4 Length",
            "Cropped Pant",
            "Full Length",
        ),
        region="lower",
    ),
    Head(
        "skirt_length_labels",
        (
            "Invisible",
            "Short Length",
            "Knee Length",
            "Midi Length",
            "Ankle Length",
            "Floor Length",
        ),
        region="lower",
    ),
    Head(
        "sleeve_length_labels",
        (
            "Invisible",
            "Sleeveless",
            "Cup Sleeves",
            "Short Sleeves",
            "Elbow Sleeves",
            "3/4 Sleeves",
            "Wrist Length",
            "Long Sleeves",
            "Extra Long Sleeves",
        ),
        region="sleeves",
    ),
)

# --- DeepFashion category benchmark (Anno/list_category_cloth.txt) ----------------------------
# 50 entries; file ids are 1-based (id 1 = index 0). Types: 1 upper (1-20), 2 lower (21-36),
# 3 full body (37-50). Cape, Nightdress, Shirtdress and Sundress have no images.
DEEPFASHION_CATEGORIES: tuple[str, ...] = (
    # upper body, ids 1-20
    "Anorak", "Blazer", "Blouse", "Bomber", "Button-Down", "Cardigan", "Flannel", "Halter",
    "Henley", "Hoodie", "Jacket", "Jersey", "Parka", "Peacoat", "Poncho", "Sweater", "Tank",
    "Tee", "Top", "Turtleneck",
    # lower body, ids 21-36
    "Capris", "Chinos", "Culottes", "Cutoffs", "Gauchos", "Jeans", "Jeggings", "Jodhpurs",
    "Joggers", "Leggings", "Sarong", "Shorts", "Skirt", "Sweatpants", "Sweatshorts", "Trunks",
    # full body, ids 37-50
    "Caftan", "Cape", "Coat", "Coverup", "Dress", "Jumpsuit", "Kaftan", "Kimono", "Nightdress",
    "Onesie", "Robe", "Romper", "Shirtdress", "Sundress",
)  # fmt: skip
DEEPFASHION_CATEGORY_TYPES: tuple[int, ...] = (1,) * 20 + (2,) * 16 + (3,) * 14
DEEPFASHION_CATEGORY: HeadSpec = (Head("category", DEEPFASHION_CATEGORIES),)

PRESETS: dict[str, HeadSpec] = {
    "deepfashion6": DEEPFASHION6,
    "fashionai8": FASHIONAI8,
    "deepfashion_category": DEEPFASHION_CATEGORY,
}

# --- FashionAI 2018 keypoints (second track, formats.md section 3) ----------------------------
# The 24 keypoints in the CSV column order; per category the keypoints of the official challenge
# definition (blouse 13, outwear 14, trousers 7, skirt 4, dress 15) and the NE normaliser:
# armpits for blouse, outwear and dress, waistband for trousers and skirt. The names are in
# names.py (the regions use them too).
_ARMPITS = ("armpit_left", "armpit_right")
_WAISTBAND = ("waistband_left", "waistband_right")
FASHIONAI_KEYPOINTS = KeypointHead(
    "fashionai_keypoints",
    FASHIONAI_KEYPOINT_NAMES,
    (
        ("neckline_left", "neckline_right"),
        ("shoulder_left", "shoulder_right"),
        ("armpit_left", "armpit_right"),
        ("waistline_left", "waistline_right"),
        ("cuff_left_in", "cuff_right_in"),
        ("cuff_left_out", "cuff_right_out"),
        ("top_hem_left", "top_hem_right"),
        ("waistband_left", "waistband_right"),
        ("hemline_left", "hemline_right"),
        ("bottom_left_in", "bottom_right_in"),
        ("bottom_left_out", "bottom_right_out"),
    ),
    {
        "blouse": (
            (
                "neckline_left", "neckline_right", "center_front", "shoulder_left",
                "shoulder_right", "armpit_left", "armpit_right", "cuff_left_in", "cuff_left_out",
                "cuff_right_in", "cuff_right_out", "top_hem_left", "top_hem_right",
            ),
            _ARMPITS,
        ),
        "outwear": (
            (
                "neckline_left", "neckline_right", "shoulder_left", "shoulder_right",
                "armpit_left", "armpit_right", "waistline_left", "waistline_right",
                "cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out",
                "top_hem_left", "top_hem_right",
            ),
            _ARMPITS,
        ),
        "trousers": (
            (
                "waistband_left", "waistband_right", "crotch", "bottom_left_in",
                "bottom_left_out", "bottom_right_in", "bottom_right_out",
            ),
            _WAISTBAND,
        ),
        "skirt": (
            ("waistband_left", "waistband_right", "hemline_left", "hemline_right"),
            _WAISTBAND,
        ),
        "dress": (
            (
                "neckline_left", "neckline_right", "center_front", "shoulder_left",
                "shoulder_right", "armpit_left", "armpit_right", "waistline_left",
                "waistline_right", "cuff_left_in", "cuff_left_out", "cuff_right_in",
                "cuff_right_out", "hemline_left", "hemline_right",
            ),
            _ARMPITS,
        ),
    },
    skeleton=(
        # neckline and shoulders
        ("neckline_left", "neckline_right"),
        ("center_front", "neckline_left"), ("center_front", "neckline_right"),
        ("neckline_left", "shoulder_left"), ("neckline_right", "shoulder_right"),
        # sleeves: top seam to the cuff, across the cuff, underside back to the armpit
        ("shoulder_left", "armpit_left"), ("shoulder_right", "armpit_right"),
        ("shoulder_left", "cuff_left_out"), ("shoulder_right", "cuff_right_out"),
        ("cuff_left_in", "cuff_left_out"), ("cuff_right_in", "cuff_right_out"),
        ("cuff_left_in", "armpit_left"), ("cuff_right_in", "armpit_right"),
        # body sides: armpit to the waistline (outwear, dress) or straight to the hem (blouse)
        ("armpit_left", "waistline_left"), ("armpit_right", "waistline_right"),
        ("waistline_left", "top_hem_left"), ("waistline_right", "top_hem_right"),
        ("armpit_left", "top_hem_left"), ("armpit_right", "top_hem_right"),
        ("waistline_left", "hemline_left"), ("waistline_right", "hemline_right"),
        ("top_hem_left", "top_hem_right"),
        # skirt
        ("waistband_left", "waistband_right"),
        ("waistband_left", "hemline_left"), ("waistband_right", "hemline_right"),
        ("hemline_left", "hemline_right"),
        # trousers: outer seam, across the leg opening, inner seam up to the crotch
        ("waistband_left", "bottom_left_out"), ("waistband_right", "bottom_right_out"),
        ("bottom_left_in", "bottom_left_out"), ("bottom_right_in", "bottom_right_out"),
        ("bottom_left_in", "crotch"), ("bottom_right_in", "crotch"),
    ),
)  # fmt: skip

# --- DeepFashion landmarks (Category and Attribute benchmark, formats.md section 5) -----------
# 8 landmarks; per clothes type (file value 1, 2, 3 = DEEPFASHION_CLOTHES_TYPES[value - 1]) the
# landmarks in the order list_landmarks.txt writes them. No normalising pair: the landmark NE is
# normalised by the image width/height (keypoint_scoring.landmark_error).
DEEPFASHION_CLOTHES_TYPES: tuple[str, ...] = ("upper_body", "lower_body", "full_body")
DEEPFASHION_LANDMARKS = KeypointHead(
    "deepfashion_landmarks",
    (
        "collar_left", "collar_right", "sleeve_left", "sleeve_right",
        "waistline_left", "waistline_right", "hem_left", "hem_right",
    ),
    (
        ("collar_left", "collar_right"),
        ("sleeve_left", "sleeve_right"),
        ("waistline_left", "waistline_right"),
        ("hem_left", "hem_right"),
    ),
    {
        "upper_body": (
            ("collar_left", "collar_right", "sleeve_left", "sleeve_right", "hem_left", "hem_right"),
            None,
        ),
        "lower_body": (("waistline_left", "waistline_right", "hem_left", "hem_right"), None),
        "full_body": (
            (
                "collar_left", "collar_right", "sleeve_left", "sleeve_right",
                "waistline_left", "waistline_right", "hem_left", "hem_right",
            ),
            None,
        ),
    },
    skeleton=(
        ("collar_left", "collar_right"),
        ("collar_left", "sleeve_left"), ("collar_right", "sleeve_right"),
        ("collar_left", "hem_left"), ("collar_right", "hem_right"),  # upper body
        ("collar_left", "waistline_left"), ("collar_right", "waistline_right"),  # full body
        ("waistline_left", "waistline_right"),
        ("waistline_left", "hem_left"), ("waistline_right", "hem_right"),
        ("hem_left", "hem_right"),
    ),
)  # fmt: skip

# Kept apart from PRESETS, whose consumers expect softmax heads only.
KEYPOINT_PRESETS: dict[str, HeadSpec] = {
    "fashionai_keypoints": (FASHIONAI_KEYPOINTS,),
    "deepfashion_landmarks": (DEEPFASHION_LANDMARKS,),
}
