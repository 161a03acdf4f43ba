"""Call queues and agents: order in Redis (or memory), agents and their status, the scheduler
that offers each caller to a free agent, callbacks that keep the caller's place."""
