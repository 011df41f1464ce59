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


class _LazyBindings(ModuleType):
    """The package without its root `__init__`: submodules load on import (or on attribute access), and
    jsii learns where each lives once the first of them has loaded jsii (through `._jsii`), so that merely
    importing classwire_infra costs no jsii import."""

    _submodules: tuple[str, ...] = ()

    def __getattr__(self, name: str) -> ModuleType:  # PEP 562: `cdktf_cdktf_provider_aws.vpc`
        if name in self._submodules:
            return importlib.import_module(f"{PACKAGE}.{name}")
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if name == "_jsii":  # the import system binds `._jsii` here once it has loaded
            import jsii._reference_map as jsii_types

            jsii_types._submodule_fqn_map.update(
                {f"{JSII_MODULE}.{_jsii_name(n)}": f"{PACKAGE}.{n}" for n in self._submodules}
            )


def install() -> bool:
    """Make the bindings lazy, if they are the checked release and not imported yet; True if it did."""
    if PACKAGE in sys.modules or importlib.metadata.version(DISTRIBUTION) != CHECKED_VERSION:
        return False
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return False
    with open(spec.origin, encoding="utf-8") as root:
        submodules = tuple(re.findall(r"^from \. import (\w+)$", root.read(), re.MULTILINE))
    package = importlib.util.module_from_spec(spec)  # its __path__ is set: submodule imports work
    package.__class__ = _LazyBindings
    package.__dict__.update(_submodules=submodules, __all__=list(submodules))
    sys.modules[PACKAGE] = package
    return True


def _jsii_name(submodule: str) -> str:
    """The submodule's name in the jsii assembly: `vpc_endpoint` is `vpcEndpoint`."""
    head, *rest = submodule.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
