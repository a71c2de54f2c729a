"""The demo: the reference system run end to end on this machine."""

from hybridmesh.demo.walkthrough import DemoReport, reference_services_path, run_demo

__all__ = ["DemoReport", "reference_services_path", "run_demo"]
