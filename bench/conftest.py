import os
import sys

# The benchmark files import their shared cases as a plain module.
sys.path.insert(0, os.path.dirname(__file__))
