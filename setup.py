"""fashion_keras: garment attribute recognition with TensorFlow 2.21 / Keras 3."""

from setuptools import find_packages, setup

# The dataset builders live in the top-level `datasets/` folder (TFDS folder style) and install
# as the `fashion_keras_datasets` package, so they never shadow Hugging Face's `datasets`.
DATASET_PACKAGES = ["fashion_keras_datasets"] + [
    "fashion_keras_datasets." + p for p in find_packages("datasets")
]

setup(
    name="fashion_keras",
    version="0.1.0",
    description="Garment attribute recognition: TFDS builders, SE-ResNet multi-head Keras 3 "
    "models, focal loss, TF Serving export.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fashion_keras", "fashion_keras.*"]) + DATASET_PACKAGES,
    package_dir={"fashion_keras_datasets": "datasets"},
    package_data={
        "fashion_keras_datasets": [
            "*/dummy_data/**/*",
            "*/*.tsv",
            "*/*.txt",
            "*/README.md",
            "*/CITATIONS.bib",
        ],
    },
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15",
        "tensorboard",  # the TensorBoard callback (tensorflow 2.21 no longer pulls it in)
        "tensorflow-datasets>=4.9.10",
        # the stock `tfds build` CLI (tensorflow-datasets 4.9.10) imports these three
        "mlcroissant",
        "importlib_resources",
        "apache-beam",
        "numpy",
        "pillow",
        "pyyaml",
    ],
    extras_require={
        "dev": [
            "pytest",
            "pytest-xdist",
            "dill",  # tensorflow_datasets.testing imports it
            "ruff==0.17.6",
            "jax[cpu]",  # runs the model tests under KERAS_BACKEND=jax
        ],
    },
    entry_points={
        "console_scripts": [
            "fashion-keras-train=fashion_keras.train:main",
        ],
    },
)
