"""Prefect flows: the SOP driver (`run_sop`) and the entry points deployments start."""
