"""One version: the installed package's metadata, the engine's record and the service's."""

import importlib.metadata

import nst_engine
import service
from nst_engine import version


def test_the_version_has_one_home():
    assert service.__version__ is version.__version__ and nst_engine.__version__ is version.__version__
    assert importlib.metadata.version("nst-service") == version.__version__
