"""Chaos experiments in the Chaos Toolkit's model (docs/resilience.md).

- :mod:`~hybridmesh.chaos.actions` and :mod:`~hybridmesh.chaos.probes`: the extension a
  ``chaos run experiment.yaml`` names with the python provider (module, func, arguments);
- :mod:`~hybridmesh.chaos.experiment` and :mod:`~hybridmesh.chaos.runner`: the same format
  read with file and line, and run by ``hybridmesh chaos run`` without the Chaos Toolkit;
- :mod:`~hybridmesh.chaos.proxy`: a TCP fault proxy in Toxiproxy's model, to slow or cut a
  database or broker connection;
- :mod:`~hybridmesh.chaos.gateway_faults`: delays and aborts on a gateway route, each with
  an expiry.

Every fault injected here expires by itself after its declared duration, so a runner that
dies before its rollbacks leaves nothing switched on for long.
"""
