"""Monthly cost of one environment's stack for a usage profile, against Pusher Channels and Ably.

    make cost ENV=prod                                   # the reference profile (cost/profiles/mid_size_school.toml)
    make cost ENV=dev PROFILE=cost/profiles/<file>.toml
    python -m cost --env prod --profile cost/profiles/mid_size_school.toml

What the stack is (NAT gateways, public IPs, cache node type and count, Lambda memory and architecture, log
groups and their retention, alarms, dashboards, KMS keys, secrets, flow logs, the access log format, the log
retention limits) is read from the synthesized `cdktf.out/stacks/classwire-<env>/cdk.tf.json`, which is
synthesized first when missing. How it is used comes from the profile (a typed dataclass, cost/profile.py);
every price from `cost/prices.toml`, each with its source and date. Frame sizes are those of the protocol
(README, "Protocol"), built with the protocol's own JSON encoding; which events are persistent comes from the
event registry, and the custom metrics from their declaration in `lambdas/classwire/metrics.py`. Writes
`cost/results/<env>-<profile>.md` (tables: components, comparison, levers, assumptions) and `.svg` (a chart),
and prints the markdown.

Modules: profile (the usage profile), prices (the price book), stack_facts (the synthesized stack), frames
(frame sizes), estimate (the bill, one step per billed service), vendors (Pusher, Ably), levers, render
(markdown and svg), __main__ (the command line).
"""

from __future__ import annotations

# The repository, for what lives outside this package: the synthesized stacks (cdktf.out/), the synth and
# Lambda build it runs when a stack is missing, and the paths the results name. Data files of the cost
# model itself (prices.toml, profiles/, results/) are found next to these modules.
from classwire_infra.paths import ROOT

__all__ = ["ROOT"]
