"""``python -m fashion_keras.data inspect ...``: see :mod:`fashion_keras.data.inspection`."""

import sys

from fashion_keras.data.inspection import main

if __name__ == "__main__":
    sys.exit(main())
