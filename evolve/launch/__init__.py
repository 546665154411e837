"""Running model-written code: the launcher (one run, streamed and bounded), its limits, the sandbox and
cgroups that contain it, runinit (exec'd first inside the sandbox), the process-tree sweep, the run's
allow-listed environment (runenv) and the agent's own secrets, kept from every run (secrets).
"""
