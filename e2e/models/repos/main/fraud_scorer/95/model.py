"""Version shim: the fault-injecting implementation lives in e2e/models/common/fault_model.py."""

import importlib.util
import os

_HERE = os.path.dirname(os.path.realpath(__file__))
_IMPL = os.path.join(_HERE, os.pardir, os.pardir, os.pardir, os.pardir, "common", "fault_model.py")
_SPEC = importlib.util.spec_from_file_location("modelship_fault_model", os.path.normpath(_IMPL))
assert _SPEC is not None and _SPEC.loader is not None
_MODULE = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_MODULE)
TritonPythonModel = _MODULE.TritonPythonModel
