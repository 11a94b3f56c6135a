"""The simulated gateway: Discord's websocket protocol, its rules and its close codes.

One ``GatewayConnection`` (``connection``) per websocket walks the states a real connection
walks: HELLO sent, then identified (or resumed), then closed. What IDENTIFY and RESUME must carry
and what they are allowed is ``handshake``; what a session learns of its guilds (the GUILD_CREATE
stream, member chunks) is ``guilds``. Whatever outlives the socket (seq, replay buffer, guilds)
lives in a ``Session`` (``simulator.sessions``). The ``Gateway`` (``hub``) owns what is shared
across connections: the session registry, identify buckets, the daily session budget, and the
routing of a guild's events to the sessions of its shard, of every shard count, counted per guild
and count in a ``tally``. ``sharding`` is how many shards the bot needs: the count Discord
recommends and the cap behind 4011. ``protocol`` holds the wire's numbers.

Frames are encoded once per event and numbered per session; each connection compresses them on
its own stream in a writer task, so a slow client never blocks a dispatch.
"""
