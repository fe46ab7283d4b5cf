"""Evaluation: numpy-only scoring (accuracy, the official FashionAI metric), test-time views,
predictors for every saved model form, ensembles, feature stacks, reports and prediction.

The commands are ``python -m fashion_keras.evaluate``, ``.predict`` and ``.train_stack``.
"""
