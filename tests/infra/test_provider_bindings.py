"""The AWS provider's bindings load one submodule at a time (classwire_infra.provider_bindings), and what
the stacks synthesize is unchanged by it (the snapshots in test_snapshots.py were written with the
bindings' own eager import)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    ).stdout


def test_a_stack_module_loads_only_the_provider_submodules_it_imports():
    loaded = run(
        """
        import sys
        import classwire_infra.network
        print(sum(name.startswith("cdktf_cdktf_provider_aws.") for name in sys.modules))
        """
    )
    # network.py imports about 15 resource types; the package has 2,123 of them.
    assert 0 < int(loaded) < 60


def test_a_submodule_is_reachable_as_an_attribute_and_on_demand_by_its_jsii_name():
    found = run(
        """
        import sys
        import classwire_infra
        import cdktf_cdktf_provider_aws as aws
        from jsii._reference_map import _try_import_type_module
        print(aws.vpc.Vpc.__name__)
        print(_try_import_type_module("@cdktf/provider-aws.sqsQueue.SqsQueue"))
        print("cdktf_cdktf_provider_aws.sqs_queue" in sys.modules)
        """
    )
    assert found.split() == ["Vpc", "True", "True"]
