"""Training: the run configuration, Keras ``fit`` with its callbacks, the phase schedule,
optimizers with per-layer rates, losses, metrics, distribution and the learning-rate finder.

The command is ``python -m fashion_keras.train``; the library call is
:func:`fashion_keras.training.trainer.train`.
"""
