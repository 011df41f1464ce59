"""Load the AWS provider's CDKTF bindings one submodule at a time, as a stack uses them.

The package's root `__init__` imports all of its 2,123 submodules (212 MB of generated Python) whatever
one imports: about 46 s of compiling and 10 s of running before any stack exists, where the stacks use 54
of them (reports/timings.md). `install()` registers the package without running that `__init__`; each
submodule still loads the jsii assembly through `cdktf_cdktf_provider_aws._jsii` and registers its own
types. jsii imports a submodule on demand should the kernel ever return a type of one not imported yet
(its `_submodule_fqn_map`, which newer generated bindings fill themselves; these predate that).

Only for the bindings release this was checked against: any other version imports normally.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
from types import ModuleType

PACKAGE = "cdktf_cdktf_provider_aws"
DISTRIBUTION = "cdktf-cdktf-provider-aws"
CHECKED_VERSION = "19.65.1"
JSII_MODULE = "@cdktf/provider-aws"


def install() -> bool:
    """Make the bindings lazy, if they are the checked release and not imported yet; True if it did."""
    if PACKAGE in sys.modules or importlib.metadata.version(DISTRIBUTION) != CHECKED_VERSION:
        return False
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return False
    with open(spec.origin, encoding="utf-8") as root:
        submodules = re.findall(r"^from \. import (\w+)$", root.read(), re.MULTILINE)
    import jsii._reference_map as jsii_types

    jsii_types._submodule_fqn_map.update(
        {f"{JSII_MODULE}.{_jsii_name(name)}": f"{PACKAGE}.{name}" for name in submodules}
    )
    package = importlib.util.module_from_spec(spec)  # its __path__ is set: submodule imports work

    def submodule(name: str) -> ModuleType:  # PEP 562: `cdktf_cdktf_provider_aws.vpc` as an attribute
        if name in submodules:
            return importlib.import_module(f"{PACKAGE}.{name}")
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")

    package.__dict__.update(__getattr__=submodule, __all__=submodules)
    sys.modules[PACKAGE] = package
    return True


def _jsii_name(submodule: str) -> str:
    """The submodule's name in the jsii assembly: `vpc_endpoint` is `vpcEndpoint`."""
    head, *rest = submodule.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
