"""`diagnose`: the seed's §2.3 decision tree.

    evidence.py   what is collected: service state, the Redis log, kernel OOM kills,
                  disk, a snapshot and the health checks, offline file checks, backups
    scenario.py   the Scenario type and the commands a scenario names next
    down.py       rules for a server that is down (A) or whose files are damaged (D)
    running.py    rules for a running server: out of memory (B), degraded (C)
    sentinel.py   rules over the Sentinel / replica topology
    engine.py     Diagnosis: evidence -> ordered scenarios, with notes

The Redis log messages the rules match live below every package, in redislog.py
(the service managers read them too).
"""
