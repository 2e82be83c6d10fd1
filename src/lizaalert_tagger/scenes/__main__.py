"""``python -m lizaalert_tagger.scenes``: the same as the ``lizaalert-scenes`` command."""

import sys

from lizaalert_tagger.scenes.cli import main

sys.exit(main())
