"""Off the machine as it happens: journal records to syslog collectors, notifications to webhooks.

The 2009 intruders destroyed the logs because none were kept off the machine.
Here every record of a run's journal (and so every head of its hash chain)
leaves the orchestrator the moment it is written, and people are told when a
run starts, needs them, loses a host and ends. Nothing here may slow or fail
a run: a collector that is down costs a dropped record and a journal line.
These are adapters: they know journal records, never steps.
"""
