"""The Trainer's module file (``trainer.py``: ``run_fn``)."""
