"""fashion_keras: garment attribute recognition with TensorFlow 2.21 / Keras 3."""

__version__ = "0.1.0"
