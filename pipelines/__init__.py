"""The TFX pipeline of fashion_keras (TFX template layout): ``pipeline.py`` defines it,
``local_runner.py`` and ``kubeflow_v2_runner.py`` run or compile it, ``models/trainer.py`` is the
Trainer's module. Needs ``pip install .[tfx]`` (glibc >= 2.39) or ``scripts/tfx_root.sh``."""
