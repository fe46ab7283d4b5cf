"""Synthetic data in the real release layouts: the demo release and the builders' dummy data.

``demo`` writes the DeepFashion-6 demo release of drawn garments (``garments``);
``dummy_data`` writes the builders' ``dummy_data/`` folders with awkward but legal content.
"""
