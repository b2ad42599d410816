"""The HTTP reward service: `longrm serve` puts any reward model behind scoring endpoints."""

#: below the shortest client timeout of the RL frameworks (slime: 120 s; OpenRLHF: 180 s), so a
#: client gets the 504 and retries cleanly, instead of giving up while the work goes on and
#: sending it again on top of the first copy
DEFAULT_REQUEST_TIMEOUT = 100.0
#: how long a request that finds the queue full waits for a place before a 429 (verl fails its
#: reward step on any 4xx, so a burst of rollouts should wait rather than be refused)
DEFAULT_QUEUE_WAIT = 30.0
