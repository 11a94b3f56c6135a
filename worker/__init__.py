"""Code that runs in child processes: shard workers, the bot-facing context, compute workers."""
