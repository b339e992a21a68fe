"""``beam``: the same SDK as ``beta9``, under the name beta9's own examples import (``from beam import …``)."""
import sys as _sys

import beta9 as _beta9
from beta9 import *  # noqa: F401,F403
from beta9 import __all__, __version__, schema  # noqa: F401

# `from beam import schema` and `import beam.schema` give the very same modules as beta9's.
_sys.modules.setdefault("beam.schema", _beta9.schema)
