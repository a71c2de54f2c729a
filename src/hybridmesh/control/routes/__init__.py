"""The resources of the control plane, one module and one operations table each."""
