"""Seeded user traffic: the world's members talk, change nicknames, go idle and run commands.

A ``TrafficSpec`` (``spec``) says how much traffic (a rate, for a duration or a count of
events), of what kinds (messages, member and presence updates, slash commands) and over which
guilds (evenly, or skewed so a few guilds are busy and most are quiet, as on Discord). A
``TrafficPlan`` (``plan``) turns a world and a spec into a sequence of ``TrafficEvent``s without
touching the event loop or the gateway, drawing what users say from ``speech``: the same world
and seed always give the same sequence, so tests can check the plan alone and a benchmark run
can be repeated exactly. The ``TrafficGenerator`` (``generator``) paces a plan and applies its
events to the ``MessageLog`` and ``Gateway`` from one asyncio task.

The benchmark pushes tens of thousands of events a second through one core, so the per-event
path does a handful of ``random()`` calls against tables built once: no logging, no
``World.guild`` per event (it costs microseconds), no ``random.choices`` (its setup costs more
than the draw).
"""
