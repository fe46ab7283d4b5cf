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
    packages=find_packages(include=["fashion_keras", "fashion_keras.*", "serving"])
    + DATASET_PACKAGES,
    package_dir={"fashion_keras_datasets": "datasets"},
    package_data={
        "fashion_keras_datasets": [
            "*/dummy_data/**/*",
            "*/*.tsv",
            "*/*.txt",
            "*/README.md",
            "*/CITATIONS.bib",
        ],
        "serving": ["models.config", "batching_parameters.txt", "docker-compose.yml"],
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
        # the official TF Serving protos + stubs (export's warmup records, serving/); it needs
        # only tensorflow>=2.21,<3, grpcio and protobuf, so it pulls in no second TensorFlow.
        # >=2.19: tfx-bsl 1.21 (the tfx extra) pins tensorflow-serving-api<2.20 (same protos)
        "tensorflow-serving-api>=2.19,<2.22",
        "grpcio",
        "safetensors",  # reads timm/PyTorch .safetensors checkpoints without torch (--weights)
        "h5py",  # Keras .weights.h5 files
        "matplotlib",  # python -m fashion_keras.lr_find plots loss against learning rate
    ],
    extras_require={
        "dev": [
            "pytest",
            "pytest-xdist",
            "dill",  # tensorflow_datasets.testing imports it
            "ruff==0.17.6",
            "jax[cpu]",  # runs the model tests under KERAS_BACKEND=jax
        ],
        # fidelity tests against timm (tests/models/test_fidelity.py) and KERAS_BACKEND=torch;
        # timm needs torchvision, and PyPI's torchvision only imports beside its own torch
        "test": ["torch==2.14.1", "torchvision==0.29.1", "timm"],
        # reading .pth/.pt checkpoints (weights-only); .safetensors needs no torch
        "torch": ["torch"],
        # `make bench` (benchmarks/): the peers it measures against, timm in PyTorch and ONNX
        # Runtime on a tf2onnx conversion (tf2onnx 1.17 works with TF 2.21 and protobuf 6)
        "bench": [
            "torch==2.14.1",
            "torchvision==0.29.1",
            "timm",
            "tf2onnx>=1.17",
            "onnx",
            "onnxruntime",
        ],
        # the TFX pipeline (pipelines/): needs glibc >= 2.39 (Debian 13, Ubuntu 24.04) or the
        # Debian 13 root of scripts/tfx_root.sh; pytest runs its tier (tests/tfx_tests). TFX lists
        # kfp-pipeline-spec (KubeflowV2DagRunner) only for Python < 3.12, so it is named here
        "tfx": ["tfx==1.21.*", "kfp-pipeline-spec>=0.3,<2.17", "pytest"],
    },
    entry_points={
        "console_scripts": [
            "fashion-keras-train=fashion_keras.train:main",
        ],
    },
)
