"""``python -m fashion_keras.models.checkpoints``: the checkpoint converter (see ``cli``)."""

import sys

from fashion_keras.models.checkpoints.cli import main

sys.exit(main())
